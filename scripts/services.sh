#!/usr/bin/env bash
# Test/CI services for nixdocker: a podman API socket, a local registry, the
# test builder image, host Nix settings for local-mode builds and a WebDAV
# server (nginx) that takes `nix copy --to http://…` uploads.
#
#   eval "$(scripts/services.sh up)"     # or: scripts/services.sh up && source "$STATE/env"
#   scripts/services.sh status
#   scripts/services.sh down
#
# Needs root on Debian 12. Progress goes to stderr; `up` prints only export lines on stdout.
# Environment: NIXDOCKER_SERVICES_DIR (state, default /tmp/nixdocker-services),
# NIXDOCKER_CACHE_DIR (rootfs cache, default /var/cache/nixdocker-test).
set -euo pipefail

STATE=${NIXDOCKER_SERVICES_DIR:-/tmp/nixdocker-services}
CACHE=${NIXDOCKER_CACHE_DIR:-/var/cache/nixdocker-test}
SOCK=$STATE/podman.sock
REGISTRY_ADDR=127.0.0.1:5000
BUILDER_IMAGE=localhost/nixdocker-test-builder:latest
SUITE=bookworm
ROOTFS_INCLUDE=nix-bin,busybox-static,ca-certificates
# catatonit backs HostConfig.Init; curl probes the sockets. tmux gives the progress suite a
# real terminal, openssh-client the remote-builder suite's ssh-keygen, time the benchmarks'
# /usr/bin/time, nginx (its ngx_http_dav_module) the http(s):// binary cache uploads. The rest
# is the brief's list.
PACKAGES=(nix-bin podman runc docker-registry skopeo mmdebstrap busybox-static uidmap dbus
  libnotify-bin apache2-utils catatonit curl libglib2.0-bin python3-gi
  qemu-user-static binfmt-support docker.io tmux openssh-client time nginx)
# arm64 runs under qemu; the arm64 builder image is a second, emulated test builder.
ARM64_BUILDER_IMAGE=localhost/nixdocker-test-builder-arm64:latest
# Debian's dockerd as a second engine beside podman, with everything of its own under $STATE.
DOCKERD_SOCK=$STATE/dockerd.sock
DOCKERD_EXEC_ROOT=/run/nixdocker-dockerd
DOCKERD_DATA_ROOT=${NIXDOCKER_DOCKERD_DATA_ROOT:-/var/lib/nixdocker-dockerd}
# nginx as a WebDAV server: Nix's HttpBinaryCacheStore uploads with PUT. Below the ephemeral
# range, so no test's freePort() can take it.
DAV_ADDR=127.0.0.1:5080
DAV_DIR=$STATE/dav

# No binary cache is reachable, and builds run as root without nixbld users.
NIX_SETTINGS=('substituters =' 'sandbox = false' 'build-users-group =')
# A tiny derivation that needs neither nixpkgs nor the network.
NIX_PROBE='derivation { name = "nixdocker-probe"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo hi > $out"]; }'

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# Bounded poll: wait_for SECONDS CMD...
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Writes $2 to $1 only when it differs, so repeated runs change nothing.
write_if_changed() {
  local file=$1 content=$2
  if [[ -f $file && $(<"$file") == "$content" ]]; then return 0; fi
  mkdir -p "$(dirname "$file")"
  printf '%s\n' "$content" >"$file.tmp.$$" && mv -f "$file.tmp.$$" "$file"
  log "wrote $file"
}

# pid_of NAME PATTERN: the live pid from $STATE/NAME.pid whose command line
# matches PATTERN (a stale pid file after a reboot must not hit another process).
pid_of() {
  local file=$STATE/$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
  echo "$pid"
}

stop_pid() {
  local name=$1 pattern=$2 pid
  if ! pid=$(pid_of "$name" "$pattern"); then
    rm -f "$STATE/$name.pid"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for 15 bash -c "! kill -0 $pid"; then
    log "$name did not stop on SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}

podman_ping() { curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping; }
# Only a 200 counts: the Debian default config answers 401 (htpasswd auth).
registry_ping() { curl -fs --max-time 2 -o /dev/null "http://$REGISTRY_ADDR/v2/"; }

# --- 1. packages -----------------------------------------------------------
ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}) and not root"
  log "installing: ${missing[*]}"
  # Keep package services (docker-registry on :5000, nix-daemon) from starting
  # during the install; our own processes replace them.
  local policy_added=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  } >&2 || rc=$?
  [[ -z $policy_added ]] || rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get failed ($rc)"
}

# --- 2. podman configuration -----------------------------------------------
# podman 4.3 (containers-common 0.50) reads both drop-in directories; verified
# with `podman info` showing values set only in a drop-in.
configure_podman() {
  write_if_changed /etc/containers/containers.conf.d/50-nixdocker-test.conf '# written by nixdocker scripts/services.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun fails on this kernel/host; runc works.
runtime = "runc"'
  write_if_changed /etc/containers/registries.conf.d/50-nixdocker-test.conf '# written by nixdocker scripts/services.sh
[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "localhost:5000"
insecure = true

# Ports 5001-5003: registries that single test suites start and stop themselves.
[[registry]]
location = "127.0.0.1:5001"
insecure = true

[[registry]]
location = "127.0.0.1:5002"
insecure = true

[[registry]]
location = "127.0.0.1:5003"
insecure = true'
}

# --- 3. host Nix -----------------------------------------------------------
# set_nix_setting FILE "key = value": replaces the key's line or appends it.
set_nix_setting() {
  local file=$1 line=$2 key=${2%% =*}
  if grep -qxF -- "$line" "$file" 2>/dev/null &&
    [[ $(grep -cE "^[[:space:]]*$key[[:space:]]*=" "$file") == 1 ]]; then
    return 0
  fi
  local tmp=$file.tmp.$$
  awk -v key="$key" -v line="$line" '
    $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { if (!done) print line; done = 1; next }
    { print }
    END { if (!done) print line }' "$file" >"$tmp"
  mv -f "$tmp" "$file"
  log "set '$line' in $file"
}

configure_nix() {
  mkdir -p /etc/nix
  [[ -f /etc/nix/nix.conf ]] || : >/etc/nix/nix.conf
  local s
  for s in "${NIX_SETTINGS[@]}"; do set_nix_setting /etc/nix/nix.conf "$s"; done

  command -v nix-build >/dev/null || die "nix-build not found"
  mkdir -p /nix
  [[ -w /nix ]] || die "/nix is not writable"
  # Single-user mode: no daemon. nix-setup-systemd sets NIX_REMOTE=daemon in
  # systemd sessions, so unset it here and in the exported environment.
  local out
  out=$(cd / && env -u NIX_REMOTE nix-build --no-out-link -E "$NIX_PROBE" 2>"$STATE/nix-probe.log") ||
    die "host nix-build failed: $(tail -5 "$STATE/nix-probe.log")"
  [[ $(<"$out") == hi ]] || die "host nix-build produced $out without the expected content"
  log "host nix ok: $(nix-build --version) -> $out"
}

# --- 4. podman API service -------------------------------------------------
start_podman() {
  if pid_of podman 'system service' >/dev/null && podman_ping >/dev/null 2>&1; then
    log "podman service already running (pid $(<"$STATE/podman.pid"))"
    return 0
  fi
  stop_pid podman 'system service'
  rm -f "$SOCK"
  # setsid and redirected fds: the service must not hold the stdout of
  # `eval "$(services.sh up)"`, or the command substitution never ends.
  setsid podman system service --time=0 "unix://$SOCK" \
    </dev/null >>"$STATE/podman.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$STATE/podman.pid"
  wait_for 30 podman_ping || die "podman service did not answer on $SOCK; see $STATE/podman.log"
  log "podman service up (pid $pid) at $SOCK"
}

# --- 5. registry -----------------------------------------------------------
# The Debian package ships a service on :5000 with htpasswd auth; it must not
# hold the port.
stop_debian_registry_service() {
  if [[ -d /run/systemd/system ]] && systemctl is-active --quiet docker-registry.service 2>/dev/null; then
    log "stopping and disabling the Debian docker-registry.service (it wants :5000)"
    systemctl disable --now docker-registry.service >&2 || true
  elif [[ -f /var/run/docker-registry.pid ]] && kill -0 "$(cat /var/run/docker-registry.pid)" 2>/dev/null; then
    log "stopping the Debian docker-registry init service (it wants :5000)"
    /etc/init.d/docker-registry stop >&2 || true
  fi
}

start_registry() {
  if pid_of registry 'docker-registry' >/dev/null && registry_ping; then
    log "registry already running (pid $(<"$STATE/registry.pid"))"
    return 0
  fi
  stop_pid registry 'docker-registry'
  stop_debian_registry_service
  if registry_ping; then
    log "reusing the registry that already answers on $REGISTRY_ADDR (not started by this script)"
    # distribution answers 405 to any manifest DELETE when storage.delete is off.
    local code
    code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' -X DELETE \
      "http://$REGISTRY_ADDR/v2/nixdocker-probe/manifests/sha256:$(printf '0%.0s' {1..64})" || true)
    [[ $code != 405 ]] || log "warning: that registry has deletes disabled; gc tests will fail"
    return 0
  fi
  local rc=0 code
  code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$REGISTRY_ADDR/v2/") || rc=$?
  ((rc == 7)) || die "$REGISTRY_ADDR is taken by something that answers /v2/ with HTTP $code (curl rc $rc); stop it or run 'scripts/services.sh down'"

  mkdir -p "$STATE/registry/data"
  write_if_changed "$STATE/registry/config.yml" "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
  # Fixed so the registry does not warn about a generated one; nothing secret here.
  secret: nixdocker-test-registry
  headers:
    X-Content-Type-Options: [nosniff]"
  setsid docker-registry serve "$STATE/registry/config.yml" \
    </dev/null >>"$STATE/registry.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$STATE/registry.pid"
  wait_for 30 registry_ping || die "registry did not answer on $REGISTRY_ADDR; see $STATE/registry.log"
  log "registry up (pid $pid) at $REGISTRY_ADDR, data in $STATE/registry/data"
}

# --- 5b. WebDAV server (nginx) ------------------------------------------------
dav_ping() { curl -fs --max-time 2 -o /dev/null "http://$DAV_ADDR/_ping"; }

# Everything of its own under $DAV_DIR: config, pid, logs, temp paths (Debian's defaults are
# under /var/lib/nginx and /var/log/nginx) and the served root. `/` takes PUT, DELETE and
# MKCOL and serves GET; `/readonly/` serves GET only, so a PUT there is refused (405), as a
# plain static server would refuse it.
start_dav() {
  if pid_of dav 'nginx: master' >/dev/null && dav_ping; then
    log "WebDAV server already running (pid $(<"$STATE/dav.pid")) at http://$DAV_ADDR"
    return 0
  fi
  stop_pid dav 'nginx: master'
  local rc=0 code
  code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$DAV_ADDR/_ping") || rc=$?
  ((rc == 7)) || die "$DAV_ADDR is taken by something that answers /_ping with HTTP $code (curl rc $rc); stop it or run 'scripts/services.sh down'"
  command -v nginx >/dev/null || die "nginx not found"
  mkdir -p "$DAV_DIR/root/readonly" "$DAV_DIR/tmp"
  # Workers run as root: the suites (root) read and remove what Nix uploaded, and the server
  # listens on loopback only.
  write_if_changed "$DAV_DIR/nginx.conf" "# written by nixdocker scripts/services.sh
daemon off;
user root;
worker_processes 1;
pid $DAV_DIR/nginx.pid;
error_log $DAV_DIR/error.log warn;
events { worker_connections 256; }
http {
  access_log $DAV_DIR/access.log;
  client_body_temp_path $DAV_DIR/tmp/body;
  proxy_temp_path $DAV_DIR/tmp/proxy;
  fastcgi_temp_path $DAV_DIR/tmp/fastcgi;
  uwsgi_temp_path $DAV_DIR/tmp/uwsgi;
  scgi_temp_path $DAV_DIR/tmp/scgi;
  default_type application/octet-stream;
  server {
    listen $DAV_ADDR;
    root $DAV_DIR/root;
    location = /_ping { return 200 \"ok\\n\"; }
    location / {
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      client_max_body_size 0;
    }
    location /readonly/ { }
  }
}"
  nginx -t -q -p "$DAV_DIR/" -e "$DAV_DIR/error.log" -c "$DAV_DIR/nginx.conf" >&2 ||
    die "nginx rejects $DAV_DIR/nginx.conf"
  setsid nginx -p "$DAV_DIR/" -e "$DAV_DIR/error.log" -c "$DAV_DIR/nginx.conf" \
    </dev/null >>"$STATE/dav.log" 2>&1 &
  echo $! >"$STATE/dav.pid"
  wait_for 30 dav_ping || die "the WebDAV server did not answer on $DAV_ADDR; see $DAV_DIR/error.log"
  log "WebDAV server up (pid $(<"$STATE/dav.pid")) at http://$DAV_ADDR, root $DAV_DIR/root"
}

# --- 6. test builder image -------------------------------------------------
builder_nix_conf() { printf '%s\n' "${NIX_SETTINGS[@]}"; }

# The rootfs and the image carry a key of everything that shapes them, so a
# change here rebuilds instead of reusing a stale cache.
builder_key() {
  { echo "$SUITE $ROOTFS_INCLUDE"; builder_nix_conf; echo v1; [[ ${1:-amd64} == amd64 ]] || echo "$1"; } |
    sha256sum | cut -c1-16
}

# One-line apt sources for $SUITE* taken from the host's configuration.
host_mirrors() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null |
    awk -v s="$SUITE" '$2 == s || index($2, s "-") == 1' | sort -u |
    awk '{ c[$1 " " $2] = c[$1 " " $2] " " $3 } END { for (k in c) print "deb " k c[k] }' | sort
}

# build_rootfs TAR [ARCH]: a foreign ARCH runs its maintainer scripts under qemu (binfmt).
build_rootfs() {
  local tar=$1 arch=${2:-amd64} mirrors=() line f
  while IFS= read -r line; do [[ -n $line ]] && mirrors+=("$line"); done < <(host_mirrors)
  if ((${#mirrors[@]} == 0)); then
    # No downloaded lists to ask apt about: hand mmdebstrap the host's source files
    # that mention the suite (it pastes files, one-line or deb822, into the chroot).
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [[ -f $f ]] && grep -qw "$SUITE" "$f" && mirrors+=("$f")
    done
  fi
  log "building rootfs with mmdebstrap (${mirrors[*]:-mmdebstrap default mirror})"
  local settings
  settings=$(printf ' %q' "${NIX_SETTINGS[@]}")
  mkdir -p "$CACHE"
  # Hooks run on the host with the rootfs directory as $1.
  # --format: mmdebstrap guesses it from the name, and "x.tar.tmp" would be a directory.
  mmdebstrap --variant=apt --format=tar --architectures="$arch" --include="$ROOTFS_INCLUDE" \
    --customize-hook='mkdir -p "$1/etc/nix" "$1/nix"' \
    --customize-hook="printf '%s\\n'$settings >\"\$1/etc/nix/nix.conf\"" \
    --customize-hook='test -x "$1/bin/busybox" && test -e "$1/bin/sh"' \
    "$SUITE" "$tar.tmp" "${mirrors[@]}" >&2
  mv -f "$tar.tmp" "$tar"
}

builder_image_current() { # IMAGE KEY
  [[ $(podman image inspect --format '{{index .Labels "nixdocker.test-builder.key"}}' "$1" 2>/dev/null) == "$2" ]]
}

# ensure_builder_image [ARCH [IMAGE]]: the test builder for ARCH, from the cached rootfs when there is one.
ensure_builder_image() {
  local arch=${1:-amd64} image=${2:-$BUILDER_IMAGE} key
  key=$(builder_key "$arch")
  if builder_image_current "$image" "$key"; then
    log "builder image $image present"
    return 0
  fi
  ! podman image exists "$image" || log "builder image $image is outdated (want key '$key'); rebuilding"
  local tar=$CACHE/test-builder-$SUITE-$key.tar
  [[ $arch == amd64 ]] || tar=$CACHE/test-builder-$SUITE-$arch-$key.tar
  rm -rf "$tar.tmp"
  if [[ -f $tar ]]; then
    log "using cached rootfs $tar"
  else
    build_rootfs "$tar" "$arch"
  fi
  log "importing $tar as $image"
  podman import --quiet --arch "$arch" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    --change "LABEL nixdocker.test-builder.key=$key" \
    "$tar" "$image" >/dev/null
  podman run --rm --arch "$arch" "$image" nix-build --version >&2 ||
    die "nix-build does not run in $image"
}

# --- 7. arm64 emulation ----------------------------------------------------
binfmt_mounted() { [[ -e /proc/sys/fs/binfmt_misc/register ]]; }
qemu_aarch64_enabled() { [[ $(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null) == enabled ]]; }

ensure_emulation() {
  if ! binfmt_mounted; then
    log "mounting binfmt_misc at /proc/sys/fs/binfmt_misc"
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
  fi
  if ! qemu_aarch64_enabled; then
    update-binfmts --enable qemu-aarch64 >&2 || die "update-binfmts --enable qemu-aarch64 failed"
  fi
  qemu_aarch64_enabled || die "qemu-aarch64 is not registered in /proc/sys/fs/binfmt_misc"
  log "arm64 emulation: $(head -2 /proc/sys/fs/binfmt_misc/qemu-aarch64 | tr '\n' ' ')"
}

# --- 8. background parts ---------------------------------------------------
# The slow parts (the arm64 builder, about 2 min cold; dockerd with the builder image
# loaded) come up in the background of `up` so the suites that need neither run
# meanwhile. Each writes $STATE/parts/NAME: "ready", or "failed: WHY" as its last line,
# and test/helpers/services.ts waits on that file (with a bound) before it runs a suite
# that needs the part. "starting" means a background job is still at work.
part_state() { tail -1 "$STATE/parts/$1" 2>/dev/null || true; }

# start_part NAME: runs `services.sh _part NAME` in its own session in the background,
# unless it is already at work. The part functions are idempotent and quick when the
# part is up already, so a second `up` re-checks it (and restarts what died).
start_part() {
  local name=$1
  mkdir -p "$STATE/parts"
  if pid_of "part-$name" "_part $name" >/dev/null; then
    log "$name: still starting in the background (log $STATE/$name.log)"
    return 0
  fi
  echo starting >"$STATE/parts/$name"
  setsid bash "$(realpath "$0")" _part "$name" </dev/null >/dev/null 2>&1 &
  echo $! >"$STATE/part-$name.pid"
  log "$name: starting in the background (log $STATE/$name.log)"
}

# The background job itself: the part's function under set -e, then its state.
run_part() {
  local name=$1 rc=0
  set +e
  ( set -e; "part_${name//-/_}" ) >>"$STATE/$name.log" 2>&1
  rc=$?
  if ((rc == 0)); then
    echo ready >>"$STATE/parts/$name"
  else
    echo "failed (exit $rc): $(tail -1 "$STATE/$name.log"); full log in $STATE/$name.log" >>"$STATE/parts/$name"
  fi
  rm -f "$STATE/part-$name.pid"
}

# stop_part NAME: ends a background job with everything it started (its session).
stop_part() {
  local pid
  pid=$(pid_of "part-$1" "_part $1") || { rm -f "$STATE/part-$1.pid"; return 0; }
  log "stopping the background start of $1 (session $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait_for 15 bash -c "! kill -0 $pid" || kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$STATE/part-$1.pid"
}

part_arm64_builder() { ensure_emulation && ensure_builder_image arm64 "$ARM64_BUILDER_IMAGE"; }
# Only the remote-builder suite needs it, and it runs late: no reason to wait for it in `up`.
part_ssh_builder() { ensure_ssh_builder_image; }

# --- 9. dockerd --------------------------------------------------------------
dockerd_ping() { curl -fsS --max-time 2 --unix-socket "$DOCKERD_SOCK" http://d/_ping; }

part_dockerd() {
  if ! { pid_of dockerd 'dockerd' >/dev/null && dockerd_ping >/dev/null 2>&1; }; then
    stop_pid dockerd 'dockerd'
    rm -f "$DOCKERD_SOCK"
    mkdir -p "$DOCKERD_DATA_ROOT" "$STATE/dockerd"
    # Everything of its own, so it never meets a system dockerd or podman; no iptables,
    # because the host's rules are not ours to change and tests use host networking.
    write_if_changed "$STATE/dockerd/daemon.json" "{
  \"data-root\": \"$DOCKERD_DATA_ROOT\",
  \"exec-root\": \"$DOCKERD_EXEC_ROOT\",
  \"pidfile\": \"$STATE/dockerd/docker.pid\",
  \"hosts\": [\"unix://$DOCKERD_SOCK\"],
  \"iptables\": false,
  \"insecure-registries\": [\"127.0.0.1:5000\", \"localhost:5000\", \"127.0.0.1:5001\", \"127.0.0.1:5002\", \"127.0.0.1:5003\"]
}"
    setsid dockerd --config-file "$STATE/dockerd/daemon.json" </dev/null >>"$STATE/dockerd/dockerd.log" 2>&1 &
    echo $! >"$STATE/dockerd.pid"
    wait_for 60 dockerd_ping || die "dockerd did not answer on $DOCKERD_SOCK; see $STATE/dockerd/dockerd.log"
    log "dockerd up (pid $(<"$STATE/dockerd.pid")) at $DOCKERD_SOCK"
  fi
  # The amd64 test builder, handed over from podman (docker cannot read podman's store).
  local key want
  key=$(builder_key amd64)
  want=$(DOCKER_HOST=unix://$DOCKERD_SOCK docker image inspect --format '{{index .Config.Labels "nixdocker.test-builder.key"}}' "$BUILDER_IMAGE" 2>/dev/null || true)
  if [[ $want != "$key" ]]; then
    log "loading $BUILDER_IMAGE into dockerd"
    podman save "$BUILDER_IMAGE" | DOCKER_HOST=unix://$DOCKERD_SOCK docker load >&2 ||
      die "could not load $BUILDER_IMAGE into dockerd"
  fi
}

# --- 10. remote-builder image ---------------------------------------------------
# A second builder image for the remote-builder tests: the test builder's
# packages plus openssh-server (which brings the ssh client Nix needs on the
# sending side). Tests start it with sshd on a loopback port of the host network.
SSH_BUILDER_IMAGE=localhost/nixdocker-test-ssh-builder:latest
SSH_ROOTFS_INCLUDE=$ROOTFS_INCLUDE,openssh-server

ssh_builder_key() {
  { echo "$SUITE $SSH_ROOTFS_INCLUDE"; builder_nix_conf; echo v1; } | sha256sum | cut -c1-16
}

ensure_ssh_builder_image() {
  local key have
  key=$(ssh_builder_key)
  if podman image exists "$SSH_BUILDER_IMAGE"; then
    have=$(podman image inspect --format '{{index .Labels "nixdocker.test-builder.key"}}' "$SSH_BUILDER_IMAGE" 2>/dev/null || true)
    if [[ $have == "$key" ]]; then
      log "remote-builder image $SSH_BUILDER_IMAGE present"
      return 0
    fi
    log "remote-builder image $SSH_BUILDER_IMAGE is outdated (key '$have', want '$key'); rebuilding"
  fi
  local tar=$CACHE/test-ssh-builder-$SUITE-$key.tar mirrors=() line f settings
  rm -rf "$tar.tmp"
  if [[ -f $tar ]]; then
    log "using cached rootfs $tar"
  else
    while IFS= read -r line; do [[ -n $line ]] && mirrors+=("$line"); done < <(host_mirrors)
    if ((${#mirrors[@]} == 0)); then
      for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && grep -qw "$SUITE" "$f" && mirrors+=("$f")
      done
    fi
    settings=$(printf ' %q' "${NIX_SETTINGS[@]}")
    mkdir -p "$CACHE"
    log "building the remote-builder rootfs with mmdebstrap"
    # openssh-server's postinst makes host keys: fine for a loopback test server.
    mmdebstrap --variant=apt --format=tar --include="$SSH_ROOTFS_INCLUDE" \
      --customize-hook='mkdir -p "$1/etc/nix" "$1/nix" "$1/run/sshd" "$1/root/.ssh"' \
      --customize-hook="printf '%s\\n'$settings >\"\$1/etc/nix/nix.conf\"" \
      --customize-hook='test -x "$1/usr/sbin/sshd" && test -x "$1/usr/bin/ssh" && test -e "$1/etc/ssh/ssh_host_ed25519_key"' \
      "$SUITE" "$tar.tmp" "${mirrors[@]}" >&2
    mv -f "$tar.tmp" "$tar"
  fi
  log "importing $tar as $SSH_BUILDER_IMAGE"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    --change "LABEL nixdocker.test-builder.key=$key" \
    "$tar" "$SSH_BUILDER_IMAGE" >/dev/null
  podman run --rm "$SSH_BUILDER_IMAGE" sh -c 'nix-build --version && ssh -V' >&2 ||
    die "nix-build or ssh does not run in $SSH_BUILDER_IMAGE"
}

# --- commands ----------------------------------------------------------------
env_lines() {
  printf 'export NIXDOCKER_SERVICES_DIR=%q\n' "$STATE"
  printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
  printf 'export NIXDOCKER_TEST_REGISTRY=%q\n' "$REGISTRY_ADDR"
  printf 'export NIXDOCKER_TEST_BUILDER_IMAGE=%q\n' "$BUILDER_IMAGE"
  printf 'export NIXDOCKER_TEST_ARM64_BUILDER_IMAGE=%q\n' "$ARM64_BUILDER_IMAGE"
  printf 'export NIXDOCKER_TEST_DOCKERD_HOST=%q\n' "unix://$DOCKERD_SOCK"
  printf 'export NIXDOCKER_TEST_SSH_BUILDER_IMAGE=%q\n' "$SSH_BUILDER_IMAGE"
  printf 'export NIXDOCKER_TEST_DAV_URL=%q\n' "http://$DAV_ADDR"
  printf 'export NIXDOCKER_TEST_DAV_DIR=%q\n' "$DAV_DIR/root"
  printf 'export NIX_REMOTE=\n'
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "run as root (podman rootful, /nix, apt-get)"
  local t0=$SECONDS
  ensure_packages
  mkdir -p "$STATE"
  configure_podman
  configure_nix
  start_podman
  start_registry
  start_dav
  ensure_builder_image
  start_part arm64-builder
  start_part dockerd
  start_part ssh-builder
  env_lines >"$STATE/env"
  log "ready in $((SECONDS - t0)) s; environment in $STATE/env"
  env_lines
}

cmd_down() {
  local names
  if command -v podman >/dev/null; then
    names=$(podman ps -a --format '{{.Names}}' --filter 'name=^nixdocker-' 2>/dev/null || true)
    if [[ -n $names ]]; then
      log "removing containers: $(echo $names)"
      # shellcheck disable=SC2086
      podman rm -f -t 0 $names >/dev/null 2>&1 || true
    fi
  fi
  local part
  for part in arm64-builder dockerd ssh-builder; do stop_part "$part"; done
  if dockerd_ping >/dev/null 2>&1; then
    names=$(DOCKER_HOST=unix://$DOCKERD_SOCK docker ps -aq 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -z $names ]] || DOCKER_HOST=unix://$DOCKERD_SOCK docker rm -f $names >/dev/null 2>&1 || true
  fi
  stop_pid dockerd 'dockerd'
  stop_pid podman 'system service'
  stop_pid registry 'docker-registry'
  stop_pid dav 'nginx: master'
  rm -rf "$SOCK" "$DOCKERD_SOCK" "$STATE/registry" "$DAV_DIR" "$STATE/env" "$STATE/parts"
  log "down"
}

cmd_status() {
  local pid names rc=0
  if pid=$(pid_of podman 'system service') && podman_ping >/dev/null 2>&1; then
    echo "podman service: running (pid $pid) at unix://$SOCK"
  else
    echo "podman service: not running"; rc=1
  fi
  if pid=$(pid_of registry 'docker-registry') && registry_ping; then
    echo "registry: running (pid $pid) at $REGISTRY_ADDR"
  elif registry_ping; then
    echo "registry: answering at $REGISTRY_ADDR (not started by this script)"
  else
    echo "registry: not running"; rc=1
  fi
  if pid=$(pid_of dav 'nginx: master') && dav_ping; then
    echo "WebDAV server: running (pid $pid) at http://$DAV_ADDR, root $DAV_DIR/root"
  else
    echo "WebDAV server: not running"; rc=1
  fi
  if command -v podman >/dev/null && podman image exists "$BUILDER_IMAGE"; then
    echo "builder image: $BUILDER_IMAGE present"
  else
    echo "builder image: $BUILDER_IMAGE missing"; rc=1
  fi
  echo "arm64 builder: $(part_state arm64-builder || true)"
  echo "remote-builder image: $(part_state ssh-builder || true)"
  if pid=$(pid_of dockerd 'dockerd') && dockerd_ping >/dev/null 2>&1; then
    echo "dockerd: running (pid $pid) at unix://$DOCKERD_SOCK ($(part_state dockerd))"
  else
    echo "dockerd: not running ($(part_state dockerd))"
  fi
  names=$(podman ps -a --format '{{.Names}} ({{.Status}})' --filter 'name=^nixdocker-' 2>/dev/null || true)
  [[ -z $names ]] || printf 'containers:\n%s\n' "$names"
  return $rc
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  _part) run_part "$2" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
