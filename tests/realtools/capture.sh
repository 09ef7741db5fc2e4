#!/usr/bin/env bash
# Regenerates tests/fixtures/realtools/*.pcap: real attack tools (nmap, hping3, hydra against a
# real sshd) and a benign baseline, run between two network namespaces this script creates,
# captured with tcpdump on the attacker's side of a veth pair.
#
#   sudo tests/realtools/capture.sh                  # every scenario, writes the fixtures and README
#   sudo tests/realtools/capture.sh --only hydra-ssh,benign
#   sudo tests/realtools/capture.sh --out /tmp/caps  # somewhere else
#   tests/realtools/capture.sh --list                # scenario names
#   tests/realtools/capture.sh --readme-only         # rewrite the fixtures' README from the pcaps
#
# Needs root (namespaces, raw sockets). Installs what is missing with apt-get. Sends traffic only
# inside the namespaces it creates. Everything it creates (namespaces, veth pair, processes) is
# removed on exit, on failure and on Ctrl-C; namespaces left by an earlier run that was killed
# with SIGKILL are removed at the next start. See tests/realtools/README.md.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
OUTDIR="$REPO/tests/fixtures/realtools"
ONLY=""
KEEP_WORK=0
README_ONLY=0

# ---- addresses ------------------------------------------------------------------------------
# The attacker and the victim share 10.66.0.0/24 on the veth pair. 10.66.1.0/24 sits behind the
# victim (routed, one hop): every address in it is local to the victim namespace ("AnyIP"
# route), so the ping sweep and the horizontal scan meet live hosts, and nmap uses ICMP echo
# for discovery (it uses ARP for targets on its own link).
ATTACKER=10.66.0.2
VICTIM=10.66.0.1
FAR_NET=10.66.1.0/24
SWEEP_NET=10.66.1.0/27 # 32 addresses: ping-sweep needs 20 distinct destinations
HSCAN_NET=10.66.1.0/26 # 64 addresses: scan-horizontal needs 30 distinct destinations
# The veth's own /24: nmap resolves its addresses with ARP instead of pinging them. The victim
# also holds .10-.19 there, so eleven neighbours answer.
LOCAL_NET=10.66.0.0/24
LOCAL_LIVE=(10.66.0.{10..19})
# IPv6 on the link only for the IPv6 sweep (scenarios ending in -v6): its router solicitations
# and multicast listener reports would otherwise land in the other captures.
ATTACKER6=2001:db8:66::2
VICTIM6=2001:db8:66::1
LOCAL_NET6=2001:db8:66::/120
LOCAL_LIVE6=(2001:db8:66::{10..19})
SNAPLEN=256

# ---- scenarios ------------------------------------------------------------------------------
# name | command run in the attacker namespace (cwd: the work dir) | frames to capture (0: until
# the tool ends) | align start to this many seconds of epoch time (0: no) | expected rule |
# field | address
SCENARIOS=(
  "nmap-syn-scan|nmap -n -sS -p 1-1000 $VICTIM|0|0|scan-vertical-tcp|src_ip|$ATTACKER"
  "nmap-connect-scan|nmap -n -sT -p 1-1000 $VICTIM|0|0|scan-vertical-tcp|src_ip|$ATTACKER"
  "nmap-udp-scan|nmap -n -sU --top-ports 100 $VICTIM|0|0|scan-vertical-udp|dst_ip|$ATTACKER"
  "nmap-fin-scan|nmap -n -sF -p 1-200 $VICTIM|0|0|scan-tcp-stealth|src_ip|$ATTACKER"
  "nmap-null-scan|nmap -n -sN -p 1-200 $VICTIM|0|0|scan-tcp-stealth|src_ip|$ATTACKER"
  "nmap-xmas-scan|nmap -n -sX -p 1-200 $VICTIM|0|0|scan-tcp-stealth|src_ip|$ATTACKER"
  "nmap-ping-sweep|nmap -n -sn -PE $SWEEP_NET|0|60|ping-sweep|src_ip|$ATTACKER"
  "nmap-horizontal-scan|nmap -n -sS -p 22 $HSCAN_NET|0|60|scan-horizontal|src_ip|$ATTACKER"
  "nmap-neighbor-sweep|nmap -n -sn $LOCAL_NET|0|0|neighbor-sweep|src_ip|$ATTACKER"
  "nmap-neighbor-sweep-v6|nmap -6 -n -sn $LOCAL_NET6|0|0|neighbor-sweep|src_ip|$ATTACKER6"
  "hping3-syn-flood|hping3 --flood -S -p 80 --rand-source $VICTIM|30000|10|syn-flood|dst_ip|$VICTIM"
  "hping3-icmp-flood|hping3 --icmp --flood $VICTIM|50000|10|icmp-flood|dst_ip|$VICTIM"
  "hping3-udp-flood|hping3 --udp --flood -p 53 $VICTIM|60000|10|udp-flood|dst_ip|$VICTIM"
  "hydra-ssh|hydra -I -l root -P words.txt -t 4 ssh://$VICTIM|0|0|ssh-brute-force|src_ip|$ATTACKER"
  "benign|(curl, ssh with a key, DNS-style UDP, ping: see benign_traffic in capture.sh)|0|0|-|-|-"
)

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) ONLY="$2"; shift 2 ;;
    --out) OUTDIR="$2"; shift 2 ;;
    --keep-work) KEEP_WORK=1; shift ;;
    --readme-only) README_ONLY=1; shift ;;
    --list) for s in "${SCENARIOS[@]}"; do echo "${s%%|*}"; done; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'capture.sh: %s\n' "$*" >&2; exit 1; }

# ---- README of the fixtures (written after the captures, or alone with --readme-only) ----------
# The day of the first packet of the first capture there is.
captured_date() {
  local f t
  for f in "$OUTDIR"/*.pcap; do
    t=$(capinfos -T -r -S -a "$f" | cut -f2)
    date -u -d "@${t%%.*}" +%Y-%m-%d
    return
  done
}
version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
write_readme() {
  {
    cat <<EOF
# Real-tool captures

Generated by [\`tests/realtools/capture.sh\`](../../realtools/capture.sh) (see
[\`tests/realtools/README.md\`](../../realtools/README.md) to regenerate), replayed by
\`sensor/tests/realtools.rs\`, which parses the table below: each capture must raise an alert of
the named rule whose \`field\` is the named address; \`benign.pcap\` must raise no alert at all.

- Attacker \`$ATTACKER\`, victim \`$VICTIM\` (one veth pair between two network namespaces;
  Ethernet, MTU 1500, offloads off). \`$FAR_NET\` is routed through the victim and every address
  in it answers (the ping sweep and the horizontal scan meet live hosts).
- Victim services: OpenSSH \`sshd\` on 22 (throwaway host key; root may log in with a key only,
  so every password fails; \`MaxAuthTries 3\`, \`MaxStartups 100\`, \`LoginGraceTime 10\`),
  \`python3 -m http.server\` on 80 and 8080, a DNS-shaped UDP responder on 53. ICMP error rate
  limits are off in the victim namespace (\`net.ipv4.icmp_ratelimit=0\`).
- Capture: \`tcpdump -i <attacker veth> -s $SNAPLEN -w FILE\` (microsecond timestamps; frames longer
  than $SNAPLEN bytes are cut). Floods: \`tcpdump -c N\` stops after N frames while the tool runs at
  full speed; each flood and the two sweeps were started so that they lie inside one
  epoch-aligned window of the rule (10 s, 60 s).
- Tools (Debian bookworm packages): nmap $(version nmap), hping3 $(version hping3), hydra
  $(version hydra), openssh-server $(version openssh-server), tcpdump $(version tcpdump); Linux
  $(uname -r). Captured $(captured_date).

| file | command (attacker namespace) | packets | bytes | seconds | rule | field | address |
|---|---|---|---|---|---|---|---|
EOF
    for s in "${SCENARIOS[@]}"; do
      IFS='|' read -r name cmd frames _ rule field addr <<<"$s"
      f="$OUTDIR/$name.pcap"
      [[ -f $f ]] || continue
      read -r _ packets duration < <(capinfos -T -r -c -u "$f")
      # shellcheck disable=SC2016 # backticks are Markdown
      printf '| `%s.pcap` | `%s` | %s | %s | %.3f | `%s` | `%s` | `%s` |\n' \
        "$name" "$cmd" "$packets" "$(stat -c %s "$f")" "$duration" "$rule" "$field" "$addr"
    done
    cat <<EOF

Total: $(du -cb "$OUTDIR"/*.pcap | tail -1 | cut -f1) bytes.

What each holds, besides the rule that must fire (other rules may fire too, e.g. nmap's host
discovery before the horizontal scan is itself a ping sweep of the /26):

- \`nmap-syn-scan\`, \`nmap-connect-scan\`: SYNs to ports 1–1000 of the victim; SYN-ACKs from 22
  and 80, RSTs from the others (the connect scan completes the handshake on 22 and 80).
- \`nmap-udp-scan\`: nmap's 100 most common UDP ports; an ICMP port unreachable (type 3 code 3)
  from the victim for each closed port; the scanner is the unreachables' destination.
- \`nmap-fin-scan\`, \`nmap-null-scan\`, \`nmap-xmas-scan\`: ports 1–200 with FIN, no flags, and
  FIN+PSH+URG; closed ports answer RST, open ones (22, 80) stay silent and are probed again.
- \`nmap-ping-sweep\`: ICMP echo requests to the 32 addresses of \`$SWEEP_NET\`, all answered.
- \`nmap-horizontal-scan\`: host discovery (ICMP echo, SYN to 443, ACK to 80, ICMP timestamp)
  then SYN to port 22 of the 64 addresses of \`$HSCAN_NET\`.
- \`nmap-neighbor-sweep\`: nmap -sn of the attacker's own link, \`$LOCAL_NET\`: as root nmap asks
  ARP for every address (no ICMP at all), again for the silent ones; the victim answers for
  its own address and \`${LOCAL_LIVE[0]}\`..\`${LOCAL_LIVE[-1]}\`.
- \`nmap-neighbor-sweep-v6\`: the same over IPv6 (\`nmap -6 -sn\` of \`$LOCAL_NET6\`, IPv6 switched on
  for this capture only): a neighbor solicitation to each address's solicited-node group, from
  \`$ATTACKER6\`; the victim answers for \`$VICTIM6\` and \`${LOCAL_LIVE6[0]}\`..\`${LOCAL_LIVE6[-1]}\`.
- \`hping3-syn-flood\`: SYNs to the victim's port 80 from random spoofed sources at full speed;
  the victim has no route back to them, so it answers none.
- \`hping3-icmp-flood\`: echo requests from the attacker at full speed and the victim's replies.
- \`hping3-udp-flood\`: empty UDP datagrams to port 53 at full speed (the responder answers only
  datagrams of DNS-header length, so there are no answers).
- \`hydra-ssh\`: hydra against the real sshd with 60 passwords and 4 tasks; a first connection
  to probe the server, then rounds of 4 connections of 3 password attempts each
  (\`MaxAuthTries 3\`: sshd disconnects at the third failure; hydra counts 2 per connection
  and tries the third password again). Between rounds hydra waits for its 32-s response
  timeout (\`-w\`), so the run takes about four minutes. No attempt succeeds.
- \`benign\`: curl to 80 and 8080, three SSH sessions logging in with a key, DNS-style queries to
  53, pings to the victim and to a host behind it; about 10 seconds.
EOF
  } >"$OUTDIR/README.md"
}

if [[ $README_ONLY -eq 1 ]]; then
  write_readme
  log "wrote $OUTDIR/README.md"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "run as root (network namespaces, raw sockets)"

if [[ -n "$ONLY" ]]; then
  for n in ${ONLY//,/ }; do
    printf '%s\n' "${SCENARIOS[@]}" | cut -d'|' -f1 | grep -qx "$n" || die "no scenario named $n (see --list)"
  done
fi
wanted() { [[ -z "$ONLY" ]] || [[ ",$ONLY," == *",$1,"* ]]; }

# ---- dependencies ---------------------------------------------------------------------------
PACKAGES=(nmap hping3 hydra openssh-server openssh-client tcpdump tshark iproute2 ethtool
  iputils-ping curl python3 procps)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)

# ---- names unique to this run; cleanup -------------------------------------------------------
RUN=$$
NS_A="outpost-rt-$RUN-att"
NS_V="outpost-rt-$RUN-vic"
IF_A="ort${RUN}a"
IF_V="ort${RUN}v"
WORK=""
CREATED_RUN_SSHD=0
BG_PIDS=()

kill_netns_procs() {
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
  [[ -n "${pids// /}" ]] || return 0
  # shellcheck disable=SC2086
  kill $pids 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [[ -n "${pids// /}" ]] || return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
}

delete_netns() {
  local ns=$1
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || return 0
  kill_netns_procs "$ns"
  ip netns del "$ns" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  delete_netns "$NS_A"
  delete_netns "$NS_V"
  ip link del "$IF_A" 2>/dev/null # only if it never moved into its namespace
  if [[ $CREATED_RUN_SSHD -eq 1 ]]; then rmdir /run/sshd 2>/dev/null; fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if [[ $rc -eq 0 && $KEEP_WORK -eq 0 ]]; then
      rm -rf "$WORK"
    else
      echo "capture.sh: work files (logs, partial captures) kept in $WORK" >&2
    fi
  fi
  [[ $rc -eq 0 ]] || echo "capture.sh: FAILED (exit $rc); namespaces, veths and processes removed" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Namespaces of earlier runs that died without cleaning up (their process is gone).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^outpost-rt-[0-9]+-(att|vic)$' || true); do
  pid=${ns#outpost-rt-}; pid=${pid%-*}
  if ! kill -0 "$pid" 2>/dev/null; then
    log "removing stale namespace $ns (run $pid is gone)"
    delete_netns "$ns"
  fi
done

WORK=$(mktemp -d /tmp/outpost-realtools.XXXXXX)
mkdir -p "$OUTDIR"

# ---- topology ---------------------------------------------------------------------------------
log "namespaces $NS_A ($ATTACKER) and $NS_V ($VICTIM, $FAR_NET behind it), veth $IF_A <-> $IF_V"
ip netns add "$NS_A"
ip netns add "$NS_V"
ip link add "$IF_A" type veth peer name "$IF_V"
ip link set "$IF_A" netns "$NS_A"
ip link set "$IF_V" netns "$NS_V"
for ns in "$NS_A" "$NS_V"; do ip -n "$ns" link set lo up; done
# No IPv6 on the link: router solicitations and MLD reports would land in captures at random.
ip netns exec "$NS_A" sysctl -qw "net.ipv6.conf.$IF_A.disable_ipv6=1"
ip netns exec "$NS_V" sysctl -qw "net.ipv6.conf.$IF_V.disable_ipv6=1"
ip -n "$NS_A" addr add "$ATTACKER/24" dev "$IF_A"
ip -n "$NS_V" addr add "$VICTIM/24" dev "$IF_V"
for a in "${LOCAL_LIVE[@]}"; do ip -n "$NS_V" addr add "$a/24" dev "$IF_V"; done
ip -n "$NS_A" link set "$IF_A" up
ip -n "$NS_V" link set "$IF_V" up
ip -n "$NS_V" route add local "$FAR_NET" dev lo
ip -n "$NS_A" route add "$FAR_NET" via "$VICTIM"
# veth frames are otherwise up to 64 KB (TSO/GSO) with partial checksums.
ip netns exec "$NS_A" ethtool -K "$IF_A" tx off tso off gso off gro off >/dev/null 2>&1
ip netns exec "$NS_V" ethtool -K "$IF_V" tx off tso off gso off gro off >/dev/null 2>&1
# Linux rate-limits ICMP errors (per destination, and per namespace since 6.x): the UDP scan
# needs every port unreachable.
ip netns exec "$NS_V" sysctl -qw net.ipv4.icmp_ratelimit=0
ip netns exec "$NS_V" sysctl -qw net.ipv4.icmp_msgs_per_sec=100000 2>/dev/null || true
ip netns exec "$NS_V" sysctl -qw net.ipv4.icmp_msgs_burst=100000 2>/dev/null || true

# ---- services in the victim namespace -----------------------------------------------------------
[[ -d /run/sshd ]] || { mkdir -p /run/sshd; chmod 0755 /run/sshd; CREATED_RUN_SSHD=1; }
ssh-keygen -q -t ed25519 -N '' -C outpost-realtools-host -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -C outpost-realtools-client -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
# root may log in with the throwaway key only (prohibit-password): every password hydra tries
# fails whatever root's password is. MaxAuthTries 3 makes hydra open many connections.
cat >"$WORK/sshd_config" <<EOF
Port 22
ListenAddress 0.0.0.0
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
MaxStartups 100
MaxAuthTries 3
LoginGraceTime 10
UseDNS no
EOF
# OpenSSH >= 9.8 penalises sources that fail authentication: off, where the option exists.
if /usr/sbin/sshd -t -f "$WORK/sshd_config" -o PerSourcePenalties=no 2>/dev/null; then
  echo "PerSourcePenalties no" >>"$WORK/sshd_config"
fi
/usr/sbin/sshd -t -f "$WORK/sshd_config"

mkdir -p "$WORK/www"
printf '<html><body>outpost realtools victim</body></html>\n' >"$WORK/www/index.html"
head -c 20000 /dev/zero | tr '\0' 'x' >"$WORK/www/page.txt"

# A DNS-shaped UDP service on port 53: answers anything of at least a DNS header's length by
# echoing it with the QR bit set (empty datagrams, e.g. hping3's, get no answer), and a client.
cat >"$WORK/dnsish.py" <<'EOF'
import random, socket, struct, sys
if sys.argv[1] == "serve":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[2], int(sys.argv[3])))
    while True:
        data, peer = s.recvfrom(4096)
        if len(data) >= 12:
            s.sendto(data[:2] + bytes([data[2] | 0x80, data[3]]) + data[4:], peer)
else:  # query SERVER PORT NAME...
    server, port = sys.argv[2], int(sys.argv[3])
    for name in sys.argv[4:]:
        q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        q += struct.pack(">HH", 1, 1)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(1.0)
        c.sendto(q, (server, port))
        c.recvfrom(4096)
        c.close()
EOF

start_bg_victim() { # logname cmd...
  local name=$1; shift
  ip netns exec "$NS_V" "$@" >"$WORK/$name.log" 2>&1 &
  BG_PIDS+=($!)
}
start_bg_victim sshd /usr/sbin/sshd -D -e -f "$WORK/sshd_config"
start_bg_victim http80 "$PY" -m http.server 80 --bind 0.0.0.0 --directory "$WORK/www"
start_bg_victim http8080 "$PY" -m http.server 8080 --bind 0.0.0.0 --directory "$WORK/www"
start_bg_victim dnsish "$PY" "$WORK/dnsish.py" serve 0.0.0.0 53

wait_listen() { # ss-filter-args...
  for _ in $(seq 100); do
    [[ -n "$(ip netns exec "$NS_V" ss -H "$@")" ]] && return 0
    sleep 0.1
  done
  die "victim service did not start: ss $*"
}
wait_listen -ltn 'sport = :22'
wait_listen -ltn 'sport = :80'
wait_listen -ltn 'sport = :8080'
wait_listen -lun 'sport = :53'

# A wordlist of 60 common passwords (none is root's: root may not log in with a password).
cat >"$WORK/words.txt" <<'EOF'
123456
password
12345678
qwerty
123456789
12345
1234
111111
1234567
dragon
123123
baseball
abc123
football
monkey
letmein
696969
shadow
master
666666
qwertyuiop
123321
mustang
1234567890
michael
654321
superman
1qaz2wsx
7777777
121212
000000
qazwsx
123qwe
killer
trustno1
jordan
jennifer
zxcvbnm
asdfgh
hunter
buster
soccer
harley
batman
andrew
tigger
sunshine
iloveyou
2000
charlie
robert
thomas
hockey
ranger
daniel
starwars
klaster
112233
george
computer
EOF

# ---- capture helpers -------------------------------------------------------------------------------
TCPDUMP_PID=""
start_capture() { # file frames
  local file=$1 frames=$2
  local args=(-i "$IF_A" -nn -s "$SNAPLEN" -B 65536 -Z root -w "$file")
  [[ $frames -gt 0 ]] && args+=(-c "$frames")
  ip netns exec "$NS_A" tcpdump "${args[@]}" 2>"$file.tcpdump.log" &
  TCPDUMP_PID=$!
  for _ in $(seq 200); do
    grep -qs 'listening on' "$file.tcpdump.log" && return 0
    kill -0 "$TCPDUMP_PID" 2>/dev/null || die "tcpdump failed: $(cat "$file.tcpdump.log")"
    sleep 0.05
  done
  die "tcpdump did not start"
}
finish_capture() { # file
  local file=$1 dropped
  if kill -0 "$TCPDUMP_PID" 2>/dev/null; then kill -INT "$TCPDUMP_PID"; fi
  wait "$TCPDUMP_PID" || true
  TCPDUMP_PID=""
  dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$file.tcpdump.log")
  [[ "${dropped:-0}" -eq 0 ]] || die "$file: tcpdump dropped $dropped packets"
}

# Sleep so that a run of `need` seconds starting now lies inside one epoch-aligned period of
# `period` seconds: a detector that counts in tumbling buckets then sees the whole burst in one.
align() { # period need
  local period=$1 need=$2 wait
  [[ $period -gt 0 ]] || return 0
  wait=$(awk -v now="$(date +%s.%N)" -v p="$period" -v n="$need" 'BEGIN {
    pos = now - int(now / p) * p
    if (pos >= 0.3 && pos + n <= p - 0.5) print 0; else print p - pos + 0.3 }')
  if [[ $wait != 0 ]]; then
    log "waiting ${wait}s so the burst falls inside one ${period}-s period"
    sleep "$wait" &
    BG_PIDS+=($!)
    wait $!
  fi
}

benign_traffic() {
  local _ ssh_opts=(-i "$WORK/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR)
  inA() { ip netns exec "$NS_A" "$@"; }
  inA ping -c 3 -i 0.5 "$VICTIM" >/dev/null
  for _ in 1 2 3; do
    inA curl -s -o /dev/null "http://$VICTIM/"
    inA curl -s -o /dev/null "http://$VICTIM:8080/page.txt"
    sleep 0.5
  done
  inA "$PY" "$WORK/dnsish.py" query "$VICTIM" 53 www.example.com mail.example.com example.org
  inA ssh "${ssh_opts[@]}" "root@$VICTIM" 'echo ok; sleep 2' >/dev/null
  inA "$PY" "$WORK/dnsish.py" query "$VICTIM" 53 api.example.net ntp.example.org
  inA ssh "${ssh_opts[@]}" "root@$VICTIM" 'uname -r' >/dev/null
  inA ping -c 2 -i 0.5 10.66.1.10 >/dev/null
  for _ in 1 2; do
    inA curl -s -o /dev/null "http://$VICTIM/"
    sleep 1
  done
  inA ssh "${ssh_opts[@]}" "root@$VICTIM" 'ls / >/dev/null' >/dev/null
  inA "$PY" "$WORK/dnsish.py" query "$VICTIM" 53 www.example.com cdn.example.net
  inA ping -c 2 -i 0.5 "$VICTIM" >/dev/null
}

# Expected durations (seconds) of each burst, for align().
burst_seconds() {
  case "$1" in
    hping3-*) echo 3 ;;
    nmap-*) echo 10 ;;
    *) echo 0 ;;
  esac
}

# IPv6 addresses on the veth pair (no duplicate-address detection), or none and IPv6 off.
ipv6_link() { # on|off
  local ns dev ns_dev
  for ns_dev in "$NS_A:$IF_A" "$NS_V:$IF_V"; do
    ns=${ns_dev%%:*} dev=${ns_dev#*:}
    if [[ $1 == on ]]; then
      ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=0"
    else
      ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
    fi
  done
  [[ $1 == on ]] || return 0
  ip -n "$NS_A" addr add "$ATTACKER6/64" dev "$IF_A" nodad
  for a in "$VICTIM6" "${LOCAL_LIVE6[@]}"; do ip -n "$NS_V" addr add "$a/64" dev "$IF_V" nodad; done
  sleep 3 # the link-local address's own announcements settle before the capture starts
}

run_scenario() { # name cmd frames align
  local name=$1 cmd=$2 frames=$3 period=$4 file="$WORK/$1.pcap" tool_pid
  log "$name: $cmd"
  [[ $name != *-v6 ]] || ipv6_link on
  align "$period" "$(burst_seconds "$name")"
  start_capture "$file" "$frames"
  if [[ $name == benign ]]; then
    benign_traffic
    sleep 1
  elif [[ $frames -gt 0 ]]; then
    # A flood: full speed until tcpdump has its frames (bounded by a timeout).
    # shellcheck disable=SC2086
    (cd "$WORK" && exec ip netns exec "$NS_A" timeout 20 $cmd) >"$file.tool.log" 2>&1 &
    tool_pid=$!
    BG_PIDS+=("$tool_pid")
    for _ in $(seq 400); do kill -0 "$TCPDUMP_PID" 2>/dev/null || break; sleep 0.05; done
    kill -INT "$tool_pid" 2>/dev/null || true
    wait "$tool_pid" || true
  else
    # In the background, so that a signal to this script interrupts the wait at once.
    # shellcheck disable=SC2086
    (cd "$WORK" && exec ip netns exec "$NS_A" $cmd) >"$file.tool.log" 2>&1 &
    tool_pid=$!
    BG_PIDS+=("$tool_pid")
    wait "$tool_pid" || die "$name: the tool failed (exit $?): $(tail -5 "$file.tool.log")"
    sleep 1 # late answers
  fi
  finish_capture "$file"
  [[ $name != *-v6 ]] || ipv6_link off
}

# ---- checks: does each capture hold what its tool should have sent? ----------------------------
count() { tshark -r "$1" -Y "$2" 2>/dev/null | wc -l; }
distinct() { tshark -r "$1" -Y "$2" -T fields -e "$3" 2>/dev/null | sort -u | wc -l; }
at_least() { # label want got
  if [[ $3 -lt $2 ]]; then die "$CHECKING: $1: $3 (want at least $2)"; fi
  printf '   %-58s %8s (>= %s)\n' "$1" "$3" "$2" >&2
}
none_of() { # label got
  if [[ $2 -ne 0 ]]; then die "$CHECKING: $1: $2 (want none)"; fi
  printf '   %-58s %8s (none)\n' "$1" "$2" >&2
}
same_period() { # file filter period: first and last matching packets in one aligned period
  local first last
  read -r first last < <(tshark -r "$1" -Y "$2" -T fields -e frame.time_epoch 2>/dev/null |
    awk 'NR == 1 { f = $1 } { l = $1 } END { print f, l }')
  awk -v a="$first" -v b="$last" -v p="$3" 'BEGIN { exit !(int(a / p) == int(b / p)) }' ||
    die "$CHECKING: the burst crosses a $3-s boundary ($first .. $last)"
  printf '   %-58s %8s\n' "burst inside one $3-s period" yes >&2
}

SYN="tcp.flags.syn == 1 && tcp.flags.ack == 0"
check_scenario() { # name file
  local f=$2
  CHECKING=$1
  log "checking $1"
  case "$1" in
    nmap-syn-scan | nmap-connect-scan)
      at_least "distinct ports SYN'd by $ATTACKER to $VICTIM" 1000 \
        "$(distinct "$f" "$SYN && ip.src == $ATTACKER && ip.dst == $VICTIM" tcp.dstport)"
      at_least "SYN-ACKs from open ports (22, 80)" 2 \
        "$(count "$f" "tcp.flags.syn == 1 && tcp.flags.ack == 1 && ip.src == $VICTIM")"
      at_least "RSTs from closed ports" 990 \
        "$(count "$f" "tcp.flags.reset == 1 && ip.src == $VICTIM")" ;;
    nmap-udp-scan)
      at_least "distinct UDP ports probed" 100 \
        "$(distinct "$f" "udp && ip.src == $ATTACKER && ip.dst == $VICTIM" udp.dstport)"
      at_least "ICMP port unreachables to $ATTACKER" 90 \
        "$(count "$f" "icmp.type == 3 && icmp.code == 3 && ip.src == $VICTIM && ip.dst == $ATTACKER")" ;;
    nmap-fin-scan | nmap-null-scan | nmap-xmas-scan)
      local flags
      case "$1" in
        nmap-fin-scan) flags=0x001 ;;
        nmap-null-scan) flags=0x000 ;;
        nmap-xmas-scan) flags=0x029 ;;
      esac
      at_least "distinct ports probed with tcp.flags == $flags" 200 \
        "$(distinct "$f" "tcp.flags == $flags && ip.src == $ATTACKER" tcp.dstport)"
      at_least "RSTs from closed ports" 190 \
        "$(count "$f" "tcp.flags.reset == 1 && ip.src == $VICTIM")" ;;
    nmap-ping-sweep)
      at_least "distinct hosts sent an ICMP echo request" 32 \
        "$(distinct "$f" "icmp.type == 8 && ip.src == $ATTACKER" ip.dst)"
      at_least "echo replies" 32 "$(count "$f" "icmp.type == 0 && ip.dst == $ATTACKER")"
      same_period "$f" "icmp.type == 8" 60 ;;
    nmap-horizontal-scan)
      at_least "distinct hosts SYN'd on port 22" 64 \
        "$(distinct "$f" "$SYN && tcp.dstport == 22 && ip.src == $ATTACKER" ip.dst)"
      at_least "SYN-ACKs from port 22" 64 \
        "$(count "$f" "tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.srcport == 22")"
      same_period "$f" "$SYN" 60 ;;
    nmap-neighbor-sweep)
      at_least "distinct addresses $ATTACKER asked for with ARP" 250 \
        "$(distinct "$f" "arp.opcode == 1 && arp.src.proto_ipv4 == $ATTACKER" arp.dst.proto_ipv4)"
      at_least "ARP replies to $ATTACKER" $((1 + ${#LOCAL_LIVE[@]})) \
        "$(count "$f" "arp.opcode == 2 && arp.dst.proto_ipv4 == $ATTACKER")"
      none_of "ICMP packets (on its own link nmap asks ARP)" "$(count "$f" "icmp")" ;;
    nmap-neighbor-sweep-v6)
      at_least "distinct addresses $ATTACKER6 solicited" 250 \
        "$(distinct "$f" "icmpv6.type == 135 && ipv6.src == $ATTACKER6" icmpv6.nd.ns.target_address)"
      at_least "neighbor advertisements to $ATTACKER6" $((1 + ${#LOCAL_LIVE6[@]})) \
        "$(count "$f" "icmpv6.type == 136 && ipv6.dst == $ATTACKER6")"
      none_of "ICMPv6 echo requests (on its own link nmap asks neighbor discovery)" \
        "$(count "$f" "icmpv6.type == 128")" ;;
    hping3-syn-flood)
      at_least "SYNs to $VICTIM:80" 29000 "$(count "$f" "$SYN && ip.dst == $VICTIM && tcp.dstport == 80")"
      at_least "distinct (spoofed) sources" 20000 \
        "$(distinct "$f" "$SYN && ip.dst == $VICTIM" ip.src)"
      same_period "$f" "$SYN" 10 ;;
    hping3-icmp-flood)
      at_least "ICMP echo requests to $VICTIM" 20000 "$(count "$f" "icmp.type == 8 && ip.dst == $VICTIM")"
      same_period "$f" "icmp" 10 ;;
    hping3-udp-flood)
      at_least "UDP datagrams to $VICTIM:53" 59000 "$(count "$f" "udp.dstport == 53 && ip.dst == $VICTIM")"
      same_period "$f" "udp" 10 ;;
    hydra-ssh)
      at_least "SSH connections completed (SYN-ACKs from :22)" 20 \
        "$(count "$f" "tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.srcport == 22")"
      at_least "failed password lines in sshd's log" 55 \
        "$(tail -n "+$((SSHD_LOG_START + 1))" "$WORK/sshd.log" | grep -ac 'Failed password for root' || true)" ;;
    benign)
      at_least "HTTP connections" 8 "$(count "$f" "$SYN && (tcp.dstport == 80 || tcp.dstport == 8080)")"
      at_least "SSH sessions" 3 "$(count "$f" "$SYN && tcp.dstport == 22")"
      at_least "DNS-style answers" 7 "$(count "$f" "udp.srcport == 53 && ip.src == $VICTIM")"
      at_least "echo replies" 7 "$(count "$f" "icmp.type == 0")" ;;
  esac
}

# ---- run --------------------------------------------------------------------------------------------
for s in "${SCENARIOS[@]}"; do
  IFS='|' read -r name cmd frames period _ <<<"$s"
  wanted "$name" || continue
  SSHD_LOG_START=$(wc -l <"$WORK/sshd.log") # the hydra check counts failures after this
  run_scenario "$name" "$cmd" "$frames" "$period"
  check_scenario "$name" "$WORK/$name.pcap"
  mv "$WORK/$name.pcap" "$OUTDIR/$name.pcap"
  chmod 0644 "$OUTDIR/$name.pcap"
done

write_readme
log "done: captures in $OUTDIR"
du -b "$OUTDIR"/*.pcap >&2
