#!/usr/bin/env bash
# The project version (CMakeLists.txt) is the one version: `ptrust --version`, libptrust's
# file name and SONAME, the provider's version parameter, ptrust.pc, and debian/changelog's
# top entry (the Debian package's version) all say it.
#   version_test.sh PTRUST VERSION CHANGELOG LIBDIR PROVIDER_DIR PC_FILE
set -euo pipefail
ptrust=$1 version=$2 changelog=$3 libdir=$4 provdir=$5 pc=$6
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ $("$ptrust" --version) == "ptrust $version" ]] || fail "ptrust --version: $("$ptrust" --version), project $version"
top=$(head -n 1 "$changelog")
[[ $top =~ ^ptrust\ \(([^\)]+)\)\  ]] || fail "debian/changelog's first line: $top"
deb=${BASH_REMATCH[1]}
[[ ${deb%%-*} == "$version" ]] || fail "debian/changelog says $deb, the project version is $version (update one of them)"
[[ -f $libdir/libptrust.so.$version ]] || fail "no $libdir/libptrust.so.$version"
soname=$(readelf -d "$libdir/libptrust.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libptrust.so.${version%%.*}" ]] || fail "SONAME $soname, expected libptrust.so.${version%%.*}"
grep -qx "Version: $version" "$pc" || fail "$pc: $(grep Version: "$pc")"
got=$(openssl list -providers -provider-path "$provdir" -provider ptrust 2>&1 | sed -n 's/^ *version: //p')
[[ $got == "$version" ]] || fail "provider version '$got'"
echo "version $version everywhere: ptrust --version, debian/changelog ($deb), SONAME $soname, ptrust.pc, provider"
