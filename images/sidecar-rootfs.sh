#!/bin/sh
# sidecar-rootfs.sh OUT DAEMON [PATH...]
#
# The first stage of every sidecar image runs this in the Debian base and
# the second stage (FROM scratch) copies OUT to /. It gathers in OUT:
#   - every shared library `ldd` names for DAEMON and for each PATH,
#     symlink chains kept, at their real place under /usr;
#   - each PATH itself (a file, a symlink chain or a directory);
#   - the merged-/usr links of the base (/bin, /lib, /lib64, /sbin);
#   - /etc/passwd and /etc/group with root and claude-bottle (10001, home
#     $SIDECAR_HOME, default /nonexistent), /etc/nsswitch.conf (files, then
#     DNS), the CA bundle, and /tmp (1777).
# DAEMON itself is not copied: the second stage takes it from the context.
# A library the base lacks is an error naming it.
set -eu
out=$1
daemon=$2
shift 2

# copy PATH: PATH into OUT at its real location, following a symlink chain.
copy() {
  p=$1
  n=0
  while [ "$n" -lt 16 ]; do
    n=$((n + 1))
    dir=$(readlink -f "$(dirname "$p")")
    q=$dir/$(basename "$p")
    if [ ! -e "$out$q" ] && [ ! -L "$out$q" ]; then
      mkdir -p "$out$dir"
      cp -a "$q" "$out$q"
    fi
    [ -L "$q" ] || return 0
    t=$(readlink "$q")
    case $t in
      /*) p=$t ;;
      *) p=$dir/$t ;;
    esac
  done
  echo "sidecar-rootfs: symlink chain too long at $1" >&2
  exit 1
}

# libs FILE: the absolute library paths ldd prints, one a line.
libs() {
  if ! list=$(ldd "$1" 2>&1); then
    case $list in
      *"not a dynamic executable"*) return 0 ;;
    esac
    printf 'sidecar-rootfs: ldd %s failed:\n%s\n' "$1" "$list" >&2
    exit 1
  fi
  case $list in
    *"not found"*)
      printf 'sidecar-rootfs: %s needs a library the base lacks:\n%s\n' "$1" "$list" >&2
      exit 1
      ;;
  esac
  printf '%s\n' "$list" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
}

mkdir -p "$out"
for l in bin lib lib64 sbin; do
  if [ -L "/$l" ]; then cp -a "/$l" "$out/$l"; fi
done
for f in "$daemon" "$@"; do
  if [ "$f" != "$daemon" ]; then copy "$f"; fi
  if [ -d "$f" ]; then continue; fi
  libs "$f" >/tmp/sidecar-rootfs.libs
  while read -r lib; do copy "$lib"; done </tmp/sidecar-rootfs.libs
done
rm -f /tmp/sidecar-rootfs.libs

mkdir -p "$out/etc/ssl/certs" "$out/tmp"
chmod 1777 "$out/tmp"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nclaude-bottle:x:10001:10001:claude-bottle:%s:/usr/sbin/nologin\n' \
  "${SIDECAR_HOME:-/nonexistent}" >"$out/etc/passwd"
printf 'root:x:0:\nclaude-bottle:x:10001:\n' >"$out/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
