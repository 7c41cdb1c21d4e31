# Where the corpus lives. Default: ../shared/data/an4 beside the repository when present;
# otherwise local/data.sh downloads CMU's an4_sphere.tar.gz into downloads/.
AN4=${AN4:-}
if [ -z "$AN4" ]; then
  _shared=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../../.." && pwd)/shared/data/an4
  if [ -d "$_shared" ]; then AN4=$_shared; else AN4=downloads/an4; fi
  unset _shared
fi
