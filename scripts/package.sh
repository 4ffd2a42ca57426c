#!/usr/bin/env bash
# Builds the Debian packages (ptrust, libptrust0, libptrust-dev) from a clean copy of the
# source tree with dpkg-buildpackage, checks them with lintian, installs them with dpkg -i and
# tests the installed product from a clean environment (env -i: no PATH, no PTRUST_*, no
# OPENSSL_*), then removes and purges them. Needs root (dpkg -i); CI runs as root.
#   scripts/package.sh            build, lint, install, test, remove, purge
#   scripts/package.sh DEB_DIR    the same with the .debs already in DEB_DIR (no build)
# What it checks, in order:
#  - the packages' version is the project version (CMakeLists.txt); lintian has nothing to say
#    beyond the explained overrides; the ptrust binary is stripped;
#  - dpkg -i; the conffiles; /var/lib/ptrust made by the postinst (root, 0755);
#  - `ptrust --version`; a first run: the installed ptrust installs a general CA into the
#    default root /, `sync --check` is clean;
#  - `openssl storeutl -noout ptrust://general` finds it only once /etc/ssl/openssl.cnf
#    `.include`s the installed snippet (no -provider-path, no environment), and `openssl
#    verify -CAstore ptrust://general` accepts the right server and refuses another CA's;
#    /etc/ssl/openssl.cnf is restored right after, and by the EXIT trap on any failure;
#  - a C client built with `pkg-config --cflags --libs ptrust`, and a CMake project using
#    find_package(ptrust) (the same client, and examples/custom-client in C++), verify an
#    `openssl s_server` on 127.0.0.1 and refuse one whose certificate another CA issued;
#  - man ptrust, ptrust.yaml(5), ptrust-provider(7), libptrust(3) render without warnings;
#    the installed bash completion completes commands and options;
#  - dpkg -r keeps the conffiles and the host's state; with the snippet still included and
#    ptrust.so gone, openssl still runs (soft_load) and ptrust:// fails closed;
#  - dpkg --purge leaves no file behind that was not there before the install.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/common.sh"
fail() { echo "package: FAILED: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root (dpkg -i, /etc/ssl/openssl.cnf); CI runs as root"
for p in ptrust libptrust0 libptrust-dev; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv "not-installed"; then
    fail "$p is already installed (or its conffiles are left): this test installs and purges its own build; dpkg --purge $p first"
  fi
done
# The test's purge removes ptrust's state and stores at root /: never run where they hold something.
for d in /var/lib/ptrust /etc/trusted-certs /etc/ptrust /etc/stunnel/crls /etc/stunnel/certs /etc/stunnel/certs-pool /run/ptrust; do
  [[ ! -e $d ]] || fail "$d exists: this machine has ptrust state at root / that the test's purge would delete"
done
version=$(sed -n 's/^project(ptrust VERSION \([0-9.]*\) .*/\1/p' "$top/CMakeLists.txt")
[[ -n $version ]] || fail "no project version in CMakeLists.txt"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
work=$(mktemp -d /tmp/ptrust-package-XXXXXX)
cnf=/etc/ssl/openssl.cnf
cnf_saved=$work/openssl.cnf.saved
cp -p "$cnf" "$cnf_saved"
installed=0 server_pid=
cleanup() {
  local rc=$?
  if ! cmp -s "$cnf" "$cnf_saved"; then cp -p "$cnf_saved" "$cnf" && echo "  restored $cnf"; fi
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if ((installed)); then
    echo "  purging the packages after a failure"
    dpkg --purge ptrust libptrust-dev libptrust0 >/dev/null 2>&1 || true
  fi
  if ((rc == 0)); then rm -rf "$work"; else echo "package: work directory kept: $work" >&2; fi
}
trap cleanup EXIT
start=$SECONDS
# The snapshot the purge is compared with: every path under the directories a package or the
# product could write to (dpkg's and apt's own databases aside).
snapshot() {
  { find /etc /usr /lib /var/lib -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt \) -prune -o -print 2>/dev/null || true; } | sort
}

# 1. Build ---------------------------------------------------------------------------------
if (($#)); then
  debs=$(cd "$1" && pwd)
  echo "  using the packages in $debs"
else
  src=$work/ptrust-$version
  mkdir -p "$src"
  # What git tracks plus new files not ignored (so uncommitted work is tested), never build/.
  git -C "$top" ls-files -z --cached --others --exclude-standard | (cd "$top" && tar --null -T - -cf -) | tar -xf - -C "$src"
  echo "  dpkg-buildpackage -us -uc -b in $src ($(nproc) jobs; log: $work/build.log)"
  t=$SECONDS
  # PTRUST_PACKAGE_CCACHE=1 compiles through ccache (development only; CI builds from scratch).
  path=$PATH
  [[ -n ${PTRUST_PACKAGE_CCACHE:-} ]] && path=/usr/lib/ccache:$PATH
  if ! (cd "$src" && PATH=$path DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -us -uc -b 2>&1) \
      | tee "$work/build.log" | grep --line-buffered -E '^\[ *[0-9]+%\] (Building|Linking)|^ +dh_[a-z_]+|^dpkg-(deb|buildpackage):|warning:|error:' \
      | progress "dpkg-buildpackage" build; then
    tail -n 40 "$work/build.log" >&2
    fail "dpkg-buildpackage"
  fi
  grep -q "^dpkg-buildpackage: info: binary-only upload" "$work/build.log" || { tail -n 40 "$work/build.log" >&2; fail "dpkg-buildpackage"; }
  echo "  packages built in $(dur $((SECONDS - t)))"
  debs=$work
fi
deb() { echo "$debs/${1}_${version}_${arch}.deb"; }
for p in ptrust libptrust0 libptrust-dev; do
  [[ -f $(deb $p) ]] || fail "$(deb $p) was not built (version $version from CMakeLists.txt)"
done
ls -l "$debs"/*.deb | sed 's/^/    /'

# 2. Lint and inspect ----------------------------------------------------------------------
echo "  lintian"
changes=$(ls "$debs"/ptrust_"${version}"_"${arch}".changes 2>/dev/null || true)
lint_in=("$(deb ptrust)" "$(deb libptrust0)" "$(deb libptrust-dev)")
[[ -n $changes ]] && lint_in=("$changes")
if ! lintian --fail-on error,warning --display-info "${lint_in[@]}" >"$work/lintian.log" 2>&1; then
  sed 's/^/    /' "$work/lintian.log" >&2
  fail "lintian"
fi
sed 's/^/    /' "$work/lintian.log"
x=$work/extract; mkdir -p "$x"
dpkg-deb -x "$(deb ptrust)" "$x"
[[ $(dpkg-deb -f "$(deb ptrust)" Version) == "$version" ]] || fail "package version $(dpkg-deb -f "$(deb ptrust)" Version) is not the project version $version"
if readelf -S "$x/usr/bin/ptrust" | grep -qE '\.(symtab|debug_info)'; then fail "/usr/bin/ptrust is not stripped"; fi
echo "  version $version, /usr/bin/ptrust stripped: $(stat -c %s "$x/usr/bin/ptrust") bytes"

# 3. Install -------------------------------------------------------------------------------
# Runtime tools of the tests (cmake, pkg-config, a compiler) are build dependencies already.
before=$work/before.list
snapshot >"$before"
echo "  dpkg -i"
installed=1
dpkg -i "$(deb libptrust0)" "$(deb libptrust-dev)" "$(deb ptrust)" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log" >&2; fail "dpkg -i"; }
conffiles=$(dpkg-query -W -f='${Conffiles}' ptrust | awk 'NF {print $1}' | sort | tr '\n' ' ')
[[ $conffiles == "/etc/ptrust/openssl-include.cnf /etc/ptrust/ptrust.yaml " ]] || fail "conffiles are: $conffiles"
[[ $(stat -c '%U:%G %a' /var/lib/ptrust) == "root:root 755" ]] || fail "/var/lib/ptrust is $(stat -c '%U:%G %a' /var/lib/ptrust)"
echo "  conffiles: $conffiles; /var/lib/ptrust root:root 0755"

clean() { env -i "$@"; }  # no environment at all: no PATH, PTRUST_*, OPENSSL_*
out=$(clean /usr/bin/ptrust --version)
[[ $out == "ptrust $version" ]] || fail "ptrust --version printed '$out'"
echo "  ptrust --version: $out"

# A first run on the host: a CA into the default root /.
pki=$work/pki
"$top/scripts/mkpki.sh" "$pki" >/dev/null
clean /usr/bin/ptrust install "$pki/root-ca.pem" --ca >"$work/first-run.log" 2>&1 || { cat "$work/first-run.log" >&2; fail "ptrust install into /"; }
clean /usr/bin/ptrust sync --check >/dev/null || fail "ptrust sync --check after the first install"
[[ -s /etc/trusted-certs/ca-bundle-general.pem && -s /var/lib/ptrust/ptrust.db ]] || fail "the first install wrote no store under /"
echo "  first run: a general CA installed into /; $(clean /usr/bin/ptrust resolve licensing | grep "^mode:" | tr -s " ") for licensing"

# 4. Every program through the snippet ------------------------------------------------------
storeutl=(clean /usr/bin/openssl storeutl -noout ptrust://general)
if "${storeutl[@]}" >"$work/storeutl.log" 2>&1; then fail "ptrust://general worked before the snippet was included"; fi
grep -q "unregistered scheme" "$work/storeutl.log" || { cat "$work/storeutl.log" >&2; fail "storeutl before the snippet: not 'unregistered scheme'"; }
printf '\n.include /etc/ptrust/openssl-include.cnf\n' >>"$cnf"
ok=1
"${storeutl[@]}" >"$work/storeutl.log" 2>&1 || ok=0
grep -q "^Total found: 1$" "$work/storeutl.log" || ok=0
verify=(clean /usr/bin/openssl verify -CAstore ptrust://general -no-CAfile -no-CApath)
"${verify[@]}" "$pki/server.pem" >"$work/verify.log" 2>&1 || ok=0
"${verify[@]}" "$pki/wrong-server.pem" >>"$work/verify.log" 2>&1 && ok=0
cp -p "$cnf_saved" "$cnf"
cmp -s "$cnf" "$cnf_saved" || fail "$cnf was not restored"
((ok)) || { cat "$work/storeutl.log" "$work/verify.log" >&2; fail "openssl through the installed snippet"; }
grep -q "server.pem: OK" "$work/verify.log" || { cat "$work/verify.log" >&2; fail "openssl verify -CAstore ptrust://general of the right server"; }
echo "  openssl storeutl/verify through .include /etc/ptrust/openssl-include.cnf: found 1, right server OK, other CA refused; $cnf restored"

# 5. Programs built against the installed library -------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
serve() { # CERT KEY: openssl s_server on 127.0.0.1:$port until the next serve / the end
  [[ -n $server_pid ]] && { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; }
  openssl s_server -quiet -accept "127.0.0.1:$port" -cert "$1" -key "$2" -www >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  fail "openssl s_server did not listen on 127.0.0.1:$port"
}
echo "  building a C client with pkg-config --cflags --libs ptrust"
# shellcheck disable=SC2046  # pkg-config's flags are words
cc -Wall -Werror -o "$work/client-pc" "$top/tests/package/client.c" $(pkg-config --cflags --libs ptrust)
echo "  building tests/package/cmake-consumer with find_package(ptrust $version EXACT)"
cmake -S "$top/tests/package/cmake-consumer" -B "$work/consumer" -DPTRUST_EXPECTED_VERSION="$version" >"$work/consumer.log" 2>&1 \
  && cmake --build "$work/consumer" -j "$(nproc)" >>"$work/consumer.log" 2>&1 || { cat "$work/consumer.log" >&2; fail "the CMake consumer project"; }
check_client() { # EXPECT(0|1) ARGV...
  local want=$1; shift
  local got=0
  clean "$@" >"$work/client.log" 2>&1 || got=1
  [[ $got == "$want" ]] || { cat "$work/client.log" >&2; fail "$(basename "$1") exit $got, expected $want"; }
  printf '    %-16s %s\n' "$(basename "$1")" "$(head -n 1 "$work/client.log")"
}
serve "$pki/server.pem" "$pki/server.key"
echo "  against openssl s_server on 127.0.0.1:$port with the root CA's server (purpose licensing: general mode)"
check_client 0 "$work/client-pc" 127.0.0.1 "$port" licensing licensing.example
check_client 0 "$work/consumer/client" 127.0.0.1 "$port" licensing licensing.example
check_client 0 "$work/consumer/custom-client" 127.0.0.1 "$port" licensing
grep -q "verified=1 reason=OK mode=general" <(clean "$work/client-pc" 127.0.0.1 "$port" licensing licensing.example) || fail "verdict of the right server"
serve "$pki/wrong-server.pem" "$pki/wrong-server.key"
echo "  against a server whose certificate another CA issued"
check_client 1 "$work/client-pc" 127.0.0.1 "$port" licensing licensing.example
check_client 1 "$work/consumer/client" 127.0.0.1 "$port" licensing licensing.example
check_client 1 "$work/consumer/custom-client" 127.0.0.1 "$port" licensing
grep -q "reason=CHAIN_UNTRUSTED" <(clean "$work/client-pc" 127.0.0.1 "$port" licensing licensing.example) || fail "verdict of the wrong server"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=

# 6. Manual pages, completion, units ----------------------------------------------------------
for page in "1 ptrust" "5 ptrust.yaml" "7 ptrust-provider" "3 libptrust"; do
  # shellcheck disable=SC2086  # "SECTION NAME"
  text=$(clean /usr/bin/man -P cat $page 2>"$work/man.log") || { cat "$work/man.log" >&2; fail "man $page"; }
  [[ ! -s $work/man.log ]] || { cat "$work/man.log" >&2; fail "man $page wrote to stderr"; }
  # shellcheck disable=SC2086
  warn=$(clean /usr/bin/man --warnings -P cat $page 2>&1 >/dev/null) || true
  [[ -z $warn ]] || fail "man $page: $warn"
  grep -q "ptrust $version" <<<"$text" || fail "man $page does not carry version $version"
done
man_lines=$(clean /usr/bin/man -P cat ptrust 2>/dev/null | wc -l)
echo "  man ptrust renders ($man_lines lines), ptrust.yaml(5), ptrust-provider(7), libptrust(3) too, no warnings"
complete_words() { # WORDS... (the last one is being completed)
  bash -c '. /usr/share/bash-completion/completions/ptrust
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ptrust; printf "%s\n" "${COMPREPLY[@]}"' _ "$@"
}
[[ $(complete_words ptrust cr) == crl ]] || fail "completion of 'ptrust cr'"
[[ $(complete_words ptrust crl "" | tr '\n' ' ') == "install uninstall list show " ]] || fail "completion of 'ptrust crl '"
[[ $(complete_words ptrust install x.pem --pi) == "--pinned" ]] || fail "completion of 'ptrust install x.pem --pi'"
echo "  bash completion: 'ptrust cr' -> crl, 'ptrust crl ' -> its actions, 'install --pi' -> --pinned"
grep -qx "ExecStart=/usr/bin/ptrust serve" /lib/systemd/system/ptrust.service || fail "ptrust.service ExecStart"
[[ -f /lib/systemd/system/ptrust.socket ]] || fail "no ptrust.socket"

# 7. Remove, then purge ---------------------------------------------------------------------
echo "  dpkg -r"
dpkg -r ptrust libptrust-dev libptrust0 >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log" >&2; fail "dpkg -r"; }
[[ $(dpkg-query -W -f='${Status}' ptrust) == "deinstall ok config-files" ]] || fail "ptrust after dpkg -r: $(dpkg-query -W -f='${Status}' ptrust)"
for f in /etc/ptrust/ptrust.yaml /etc/ptrust/openssl-include.cnf /var/lib/ptrust/ptrust.db /etc/trusted-certs/ca-bundle-general.pem; do
  [[ -f $f ]] || fail "$f is gone after dpkg -r (conffiles and the host's state stay until purge)"
done
for f in /usr/bin/ptrust "/usr/lib/$multiarch/ossl-modules/ptrust.so" "/usr/lib/$multiarch/libptrust.so.0"; do
  [[ ! -e $f ]] || fail "$f is still there after dpkg -r"
done
# The snippet still included while ptrust.so is gone (removed, not purged): every other
# program keeps working (soft_load) and ptrust:// fails closed.
printf '\n.include /etc/ptrust/openssl-include.cnf\n' >>"$cnf"
ok=1
clean /usr/bin/openssl verify -CAfile "$pki/root-ca.pem" "$pki/server.pem" >"$work/removed.log" 2>&1 || ok=0
"${storeutl[@]}" >>"$work/removed.log" 2>&1 && ok=0
grep -q "unregistered scheme" "$work/removed.log" || ok=0
cp -p "$cnf_saved" "$cnf"
((ok)) || { cat "$work/removed.log" >&2; fail "openssl with the snippet included after dpkg -r"; }
echo "  after dpkg -r: conffiles, database and stores kept; with the snippet still included openssl runs and ptrust:// fails closed"
echo "  dpkg --purge"
dpkg --purge ptrust libptrust-dev libptrust0 >"$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge"; }
installed=0
snapshot >"$work/after.list"
if ! diff "$before" "$work/after.list" >"$work/purge.diff"; then
  sed 's/^/    /' "$work/purge.diff" >&2
  fail "the purge left the file system different from before the install"
fi
[[ ! -e /run/ptrust ]] || fail "/run/ptrust is left after the purge"
cmp -s "$cnf" "$cnf_saved" || fail "$cnf differs from before the test"
echo "  dpkg --purge: nothing left ($(wc -l <"$before") paths compared); $cnf as before"
echo "  package build and tests took $(dur $((SECONDS - start)))"
