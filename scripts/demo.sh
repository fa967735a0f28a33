#!/usr/bin/env bash
# The demo. Needs root; cleans up everything it started, by pid.
#
#   ./scripts/demo.sh          failover on a real 3-node CTDB cluster (network namespaces):
#                              clients lock through public IP X, the node holding X is
#                              SIGKILLed, CTDB moves X, the clients reclaim through X on the
#                              new node while a newcomer gets NFS4ERR_GRACE
#                              (examples/failover_demo.rs)
#   ./scripts/demo.sh single   one ganesha.nfsd with the backend on the embedded default
#                              (dir store): clients lock, the server is SIGKILLed and
#                              restarted, the clients reclaim
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

if [[ ${1:-} != single ]]; then
  cargo build --release --quiet --workspace --lib --bins --examples
  exec ./target/release/examples/failover_demo
fi

# Single-node demo.
cargo build --release --quiet --workspace

work=$(mktemp -d /tmp/ganesha-ctdb-demo.XXXXXX)
ns="gctdb-demo-$$"
pid=""
cleanup() {
  set +e # clean up everything even if one step fails
  if [[ -n $pid ]]; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  ip netns del "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work"/{lib,export,store,run}
ln -s "$PWD/target/release/libganesha_ctdb_recov.so" "$work/lib/libganesha_rados_recov.so"
echo "hello from ganesha-ctdb" | tee "$work/export/a.txt" >"$work/export/b.txt"
cat >"$work/ganesha.conf" <<CONF
NFS_CORE_PARAM { Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }
NFS_KRB5 { Active_krb5 = false; CCacheDir = $work/run/ccache; }
NFSV4 { RecoveryBackend = rados_cluster; Minor_Versions = 0, 1, 2; Lease_Lifetime = 10; Grace_Period = 15; }
CTDB_RECOVERY { Store = dir; Dir = $work/store; Node_Id = demo-node; }
EXPORT { Export_Id = 1; Path = $work/export; Pseudo = /export; Access_Type = RW;
         Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP; FSAL { Name = VFS; } }
LOG { Default_Log_Level = EVENT; Components { CLIENTID = EVENT; } }
CONF

ip netns add "$ns"
ip -n "$ns" link set lo up

start_ganesha() {
  LD_LIBRARY_PATH="$work/lib" ip netns exec "$ns" /usr/bin/ganesha.nfsd -F \
    -L "$work/ganesha.log" -N NIV_EVENT -f "$work/ganesha.conf" -p "$work/run/ganesha.pid" &
  pid=$!
  for _ in $(seq 100); do
    ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2049' 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "ganesha.nfsd exited:"; tail -20 "$work/ganesha.log"; return 1; }
    sleep 0.2
  done
  echo "ganesha.nfsd did not listen on 2049 within 20 s"; return 1
}

step() { printf '\n== %s\n' "$*"; }

step "Starting ganesha.nfsd (pid below) with RecoveryBackend = rados_cluster -> ganesha-ctdb"
start_ganesha
echo "pid $pid"; grep -E 'ganesha-ctdb' "$work/ganesha.log" | sed 's/^.*:EVENT :/  /'

client() { ./target/release/nfs4-client --netns "$ns" "$@"; }

step "An NFSv4.0 and an NFSv4.1 client each open a file and lock bytes 0-99 (add_clid -> durable record)"
client lock export/a.txt --minor 0 --owner demo-v40 --state "$work/run/v40.state"
client lock export/b.txt --minor 1 --owner demo-v41 --state "$work/run/v41.state"
./target/release/ganesha-ctdb --dir "$work/store" records

step "SIGKILL the server (a crash), then start it again"
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
start_ganesha
echo "pid $pid"
grep -E 'may reclaim|Now IN GRACE' "$work/ganesha.log" | tail -2 | sed 's/^.*\] /  /'

step "During grace a new client is refused: nobody can take what the crashed clients are about to reclaim"
client try-lock export/b.txt --minor 0 --owner newcomer || true

step "Both clients reclaim their open and their lock"
client reclaim --state "$work/run/v40.state"
client reclaim --state "$work/run/v41.state"

step "Grace ends (a v4.0 client keeps it for the full Grace_Period). The demo clients exited and stopped\n   renewing, so their leases lapsed and Ganesha expired them: rm_clid removed their records"
for _ in $(seq 40); do
  grep -q 'NOT IN GRACE' <(tail -n +"$(grep -n 'Now IN GRACE' "$work/ganesha.log" | tail -1 | cut -d: -f1)" "$work/ganesha.log") && break
  sleep 1
done
grep -E 'ended;|NOT IN GRACE' "$work/ganesha.log" | tail -2 | sed 's/^.*\] /  /'
./target/release/ganesha-ctdb --dir "$work/store" records
