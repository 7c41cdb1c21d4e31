#!/usr/bin/env bash
# Turn --name value (and --name=value) command-line options into shell variables that the
# calling script declared beforehand (name=default). Unknown names are an error, and so is a
# value of a different kind: a whole number for a number default, true/false for a true/false one.
# Source it: . utils/parse_options.sh  (list_options="a b" names options that take a list of
# whole numbers, e.g. seeds)
# --help prints the calling script's declarations ("name=default  # help", indented "# ..." lines
# continue the help) with the values in effect: a recipe's run.sh passes its own before "$@".
_help() {
  local _l _n _t
  echo "Usage: $0 [--name value ...]"
  while IFS= read -r _l; do
    [[ $_l == *parse_options.sh* ]] && break
    if [[ $_l =~ ^([a-z_0-9]+)= ]]; then
      _n=${BASH_REMATCH[1]}; _t=
      [[ $_l =~ [[:space:]]#[[:space:]]*(.*)$ ]] && _t=${BASH_REMATCH[1]}
      printf '  --%s (default: %s)  %s\n' "$_n" "${!_n:-empty}" "$_t"
    elif [[ -n ${_n:-} && $_l =~ ^[[:space:]]+#[[:space:]]*(.*)$ ]]; then
      printf '        %s\n' "${BASH_REMATCH[1]}"
    else
      _n=
    fi
  done < "$0"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _help; exit 0 ;;
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
  if [[ " ${list_options:-} " == *" $_name "* ]]; then  # the script's lists of whole numbers
    [[ $_val =~ ^[0-9]+([[:space:]]+[0-9]+)*$ ]] \
      || { echo "$0: --$_name takes whole numbers >= 0 separated by spaces, not '$_val'" >&2; exit 2; }
  elif [[ ${!_name} =~ ^[0-9]+$ && ! $_val =~ ^[0-9]+$ ]]; then
    echo "$0: --$_name takes a whole number >= 0, not '$_val'" >&2; exit 2
  elif [[ ${!_name} =~ ^(true|false)$ && ! $_val =~ ^(true|false)$ ]]; then
    echo "$0: --$_name takes true or false, not '$_val'" >&2; exit 2
  fi
  printf -v "$_name" '%s' "$_val"
done
unset _name _val
unset -f _help
