#!/usr/bin/env bash
# Turn --name value (and --name=value) command-line options into shell variables that the
# calling script declared beforehand (name=default). Unknown names are an error, and so is a
# value of a different kind (e.g. a word for a number). Source it: . utils/parse_options.sh
# --help prints the calling script's "name=default  # help" lines.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      grep -E '^[a-z_0-9]+=.*#' "$0" | sed -e 's/^/  --/' -e 's/=/ (default: /' -e 's/  *#/)  /'
      exit 0 ;;
    --*=*) _name=${1%%=*}; _val=${1#*=}; shift ;;
    --*)
      _name=$1
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 2; fi
      _val=$2; shift 2 ;;
    *) break ;;
  esac
  _name=${_name#--}
  _name=${_name//-/_}
  if ! declare -p "$_name" >/dev/null 2>&1 || [[ ! $_name =~ ^[a-z_][a-z_0-9]*$ ]]; then
    echo "$0: unknown option --$_name (see --help)" >&2; exit 2
  fi
  printf -v "$_name" '%s' "$_val"
done
unset _name _val
