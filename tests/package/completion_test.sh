#!/usr/bin/env bash
# The bash completion the build generates (`ptrust completion bash`) completes every command,
# group action and option that `ptrust --help` and `ptrust COMMAND --help` show, and nothing
# else for a command name.
#   completion_test.sh PTRUST COMPLETION_FILE
set -euo pipefail
ptrust=$1 file=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ -s $file ]] || fail "no completion file $file"
cmp -s "$file" <("$ptrust" completion bash) || fail "$file differs from \`ptrust completion bash\`"
if "$ptrust" --help | grep -q completion; then fail "the hidden completion command is listed in --help"; fi
complete_words() { # WORDS... (the last one is being completed)
  bash -c '. "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ptrust; printf "%s\n" "${COMPREPLY[@]}"' "$file" "$@"
}
# Commands as --help lists them: "  install FILE ...", "  crl install FILE ...".
mapfile -t cmds < <("$ptrust" --help | sed -n '/^commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\)\( \([a-z][a-z-]*\)\)\?\b.*/\1\2/p' \
  | while read -r a b; do if [[ -n $b ]] && "$ptrust" "$a" --help 2>/dev/null | grep -q '^actions:'; then echo "$a $b"; else echo "$a"; fi; done)
((${#cmds[@]} > 20)) || fail "only ${#cmds[@]} commands read from --help"
top=$(complete_words ptrust "" | sort | tr '\n' ' ')
want=$(printf '%s\n' "${cmds[@]}" | cut -d' ' -f1 | sort -u | tr '\n' ' ')
[[ $top == "$want" ]] || fail "'ptrust <TAB>' gives: $top; --help has: $want"
n=0
for c in "${cmds[@]}"; do
  read -r -a w <<<"$c"
  if ((${#w[@]} == 2)); then
    got=$(complete_words ptrust "${w[0]}" "")
    grep -qx "${w[1]}" <<<"$got" || fail "'ptrust ${w[0]} <TAB>' lacks ${w[1]}"
  fi
  # Every option of `ptrust CMD --help` ("  --purpose arg  ...").
  opts=$("$ptrust" "${w[@]}" --help | sed -n 's/^  \(-h \[ \)\?\(--[a-z][a-z-]*\).*/\2/p' | sort -u)
  got=$(complete_words ptrust "${w[@]}" -- | sort -u)
  for o in $opts; do
    grep -qx -- "$o" <<<"$got" || fail "'ptrust $c --<TAB>' lacks $o"
    n=$((n + 1))
  done
done
# The value of an option that takes one is not a command: `ptrust --root DIR cr<TAB>`.
[[ $(complete_words ptrust --root /tmp cr) == crl ]] || fail "'ptrust --root /tmp cr' did not complete to crl"
[[ -z $(complete_words ptrust --root cr) ]] || fail "'ptrust --root <TAB>' offered commands instead of files"
echo "completion: ${#cmds[@]} commands and $n options of --help, all completed"
