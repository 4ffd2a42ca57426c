# Sourced by the Quick start scripts (deps, build, demo, tests): headings in bold only on a
# terminal (never with NO_COLOR), and long work that reports progress instead of going quiet.
# shellcheck shell=bash

if [[ -t 1 && -z ${NO_COLOR:-} && ${TERM:-dumb} != dumb ]]; then
  _b=$'\033[1m' _o=$'\033[0m'
else
  _b='' _o=''
fi

# "3m07s" for a number of seconds.
dur() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# A phase of a Quick start command: "[demo 2/3] build ..." in bold.
phase() { printf '%s[%s] %s%s\n' "$_b" "$1" "$2" "$_o"; }

# Copies stdin to stdout line by line. After 10 s with nothing new it prints one line saying
# the work goes on (LABEL, time so far), so a slow step never looks like a hang.
# MODE build: cmake's Makefile lines become "[ 42%] compile core/db.cc" / "link ptrust"
# (anything else, e.g. a compiler diagnostic, passes unchanged) and a summary closes it.
progress() { # LABEL [MODE]
  local label=$1 mode=${2:-plain} line pending='' rc start=$SECONDS
  local compiled=0 linked=0 obj rest
  while :; do
    if IFS= read -r -t 10 line; then
      line=$pending$line pending=
    else
      rc=$?
      if ((rc > 128)); then  # timed out; keep a partial line for the next read
        pending+=$line
        printf '  ... %s still running (%s so far)\n' "$label" "$(dur $((SECONDS - start)))"
        continue
      fi
      line=$pending$line
      [[ -n $line ]] || break
      pending=
    fi
    if [[ $mode == build ]]; then
      if [[ $line =~ ^\[\ *([0-9]+)%\]\ Building\ (C|CXX)\ object\ (.+)$ ]]; then
        obj=${BASH_REMATCH[3]} rest=${BASH_REMATCH[3]#*.dir/}
        [[ $obj == CMakeFiles/* ]] && obj= || obj=${obj%%/CMakeFiles/*}/
        line=$(printf '  [%3s%%] compile %s' "${BASH_REMATCH[1]}" "$obj${rest%.o}")
        compiled=$((compiled + 1))
      elif [[ $line =~ ^\[\ *([0-9]+)%\]\ Linking\ [A-Z]+\ [a-z\ ]+\ (.+)$ ]]; then
        line=$(printf '  [%3s%%] link %s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]##*/}")
        linked=$((linked + 1))
      elif [[ $line =~ ^(\[\ *[0-9]+%\]\ Built\ target|Consolidate\ compiler|Scanning\ dependencies) ]]; then
        continue
      fi
    fi
    printf '%s\n' "$line"
  done
  if [[ $mode == build ]]; then
    if ((compiled + linked == 0)); then
      printf '  %s: up to date, nothing compiled (%s)\n' "$label" "$(dur $((SECONDS - start)))"
    else
      printf '  %s: %d files compiled, %d linked in %s\n' "$label" "$compiled" "$linked" "$(dur $((SECONDS - start)))"
    fi
  fi
}
