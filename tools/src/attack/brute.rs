//! Brute forces: many short login sessions from one attacker to one server, as hydra-like
//! tools run them (a few parallel tasks, each opening one connection after another), and an
//! SSH brute force that ends in a long interactive session.
//!
//! | kind | one attempt | attempts | vs the rule |
//! |---|---|---|---|
//! | `ssh-brute-force` | handshake; client and server banners; KEXINIT both ways (real name lists); ECDH init and reply, NEWKEYS; service request/accept; 1–3 password tries, each failing after sshd's 1.5–2.6 s delay; disconnect and FIN close — 3–10 s, a few kB | 30–50 paced over 1.5–2.5 min, 2–4 parallel tasks | ≥ 3× the 10 of `ssh-brute-force` in 5 min |
//! | `rdp-brute-force` | handshake; X.224 connection request with an `mstshash` cookie and RDP_NEG_REQ (TLS + CredSSP); connection confirm selecting CredSSP; TLS handshake; CredSSP/NTLM negotiate, challenge, authenticate; the server's logon-failure TSRequest and close — under a second | 30–50 | ≥ 3× the 10 of `rdp-brute-force` |
//! | `login-brute-force` | FTP (21: `220` banner, 1–3 `USER`/`PASS` → `530` after 1–3 s, `QUIT`), MySQL (3306: v10 greeting, handshake response, error 1045) or IMAP (143: Dovecot greeting, 1–3 `LOGIN` → `NO [AUTHENTICATIONFAILED]` after 2 s, `LOGOUT`), one service per attack | 40–65 | ≥ 2.6× the 15 of `login-brute-force` |
//! | `brute-force-then-session` | an SSH brute force of 20–40 attempts over 1–2 min, then 5–40 s later a successful login from a new port of the same attacker: key exchange, `USERAUTH_SUCCESS`, a session channel with a pty and a shell, the MOTD, then commands typed key by key (each echoed) with their output, 2.5–6 min in all and at least 120 kB of output (some commands print 20–150 kB), `exit` | 20–40, then one session | ≥ 2× the 10 of `ssh-brute-force`; a session of ≥ 2 min and ≥ 100 kB for `brute-force-then-session` |
//!
//! Every connection has a source port of its own (Linux hands them out 2 apart for one
//! destination), completes its handshake and ends with FIN (RDP and the login services: the
//! server closes; SSH: the client disconnects), so a flow meter sees one short, completed
//! flow per attempt. No gap inside a session reaches 15 s.

use std::net::IpAddr;

use outpost_decode::meta::tcp_flags::{ACK, PSH};

use super::ctx::{AttackCtx, Planned};
use super::packet::{Data, FWD, Peer, Pkt, REV, Session, Tag, TcpConn, phase, quick};
use super::plan::PlanExhausted;
use crate::random::Random;

/// A login service brute-forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// SSH, port 22.
    Ssh,
    /// RDP, port 3389.
    Rdp,
    /// FTP, port 21.
    Ftp,
    /// MySQL, port 3306.
    Mysql,
    /// IMAP, port 143.
    Imap,
}

impl Service {
    pub(crate) const fn port(self) -> u16 {
        match self {
            Service::Ssh => 22,
            Service::Rdp => 3389,
            Service::Ftp => 21,
            Service::Mysql => 3306,
            Service::Imap => 143,
        }
    }
}

const USERS: &[&str] =
    &["root", "admin", "test", "user", "oracle", "ubuntu", "postgres", "guest", "ftp", "support"];
const PASSWORDS: &[&str] = &[
    "123456", "password", "admin", "qwerty", "letmein", "12345678", "welcome", "changeme", "P@ssw0rd", "root",
];

const SSH_CLIENTS: &[&str] = &[
    "SSH-2.0-libssh_0.10.6\r\n",
    "SSH-2.0-libssh2_1.11.0\r\n",
    "SSH-2.0-Go\r\n",
    "SSH-2.0-paramiko_3.4.0\r\n",
];
const SSH_SERVERS: &[&str] = &[
    "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10\r\n",
    "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n",
    "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
];

/// KEXINIT name lists (RFC 4253 §7.1) of an attack tool's SSH library.
const CLIENT_KEX: [&str; 10] = [
    "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,ext-info-c",
    "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256",
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr",
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr",
    "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
    "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
    "none,zlib@openssh.com",
    "none,zlib@openssh.com",
    "",
    "",
];

/// KEXINIT name lists of OpenSSH's sshd.
const SERVER_KEX: [&str; 10] = [
    "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
     ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,\
     diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,kex-strict-s-v00@openssh.com",
    "rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519",
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,\
     hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,\
     hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    "none,zlib@openssh.com",
    "none,zlib@openssh.com",
    "",
    "",
];

/// An SSH binary packet (RFC 4253 §6) around `payload`, unencrypted: length, padding length,
/// payload, at least four bytes of padding to a multiple of eight.
fn ssh_packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let len = (1 + payload.len() + pad) as u32;
    let mut out = Vec::with_capacity(4 + len as usize);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(pad as u8);
    out.extend_from_slice(payload);
    out.resize(out.len() + pad, 0);
    out
}

/// SSH_MSG_KEXINIT with a random cookie.
fn ssh_kexinit(lists: &[&str; 10], rng: &mut Random) -> Vec<u8> {
    let mut p = vec![20u8];
    for _ in 0..2 {
        p.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    for l in lists {
        p.extend_from_slice(&(l.len() as u32).to_be_bytes());
        p.extend_from_slice(l.as_bytes());
    }
    p.push(0); // first_kex_packet_follows
    p.extend_from_slice(&[0; 4]);
    ssh_packet(&p)
}

/// SSH_MSG_KEX_ECDH_INIT with a random Curve25519 public key (RFC 5656 §4, RFC 8731).
fn ssh_ecdh_init(rng: &mut Random) -> Vec<u8> {
    let mut p = vec![30u8];
    p.extend_from_slice(&32u32.to_be_bytes());
    for _ in 0..4 {
        p.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    ssh_packet(&p)
}

/// An encrypted SSH packet of about `len` bytes (chacha20-poly1305: a multiple of eight plus
/// the 16-byte tag).
fn ssh_len(len: u64) -> usize {
    (len.div_ceil(8) * 8 + 16) as usize
}

/// What one brute-force run keeps the same across its attempts.
#[derive(Clone, Copy, Debug)]
struct Style {
    service: Service,
    client_banner: &'static str,
    server_banner: &'static str,
    rtt: u64,
    mss: usize,
    client_ttl: u8,
}

/// Plays the SSH transport up to an accepted `ssh-userauth` service request.
fn ssh_transport(s: &mut Session<'_>, style: &Style) {
    s.open();
    let q = quick(s.rng);
    s.message(q, FWD, style.client_banner.as_bytes());
    let d = s.react(REV);
    s.message(d, REV, style.server_banner.as_bytes());
    let kex = ssh_kexinit(&SERVER_KEX, s.rng);
    let q = quick(s.rng);
    s.message(q, REV, &kex);
    let d = s.react(FWD);
    let kex = ssh_kexinit(&CLIENT_KEX, s.rng);
    s.message(d, FWD, &kex);
    let init = ssh_ecdh_init(s.rng);
    let q = quick(s.rng);
    s.message(q, FWD, &init);
    // ECDH reply (host key, signature) and NEWKEYS, after the server's key agreement.
    let d = s.react(REV) + s.rng.range(1_000_000, 4_000_000);
    let n = ssh_len(s.rng.range(540, 1080)) + 16;
    s.record(d, REV, &[], n);
    let d = s.react(FWD);
    s.record(d, FWD, &[], 16 + ssh_len(36)); // NEWKEYS, SERVICE_REQUEST
    let d = s.react(REV);
    s.record(d, REV, &[], ssh_len(36)); // SERVICE_ACCEPT
}

/// One failed SSH login attempt with `tries` passwords.
fn ssh_attempt(s: &mut Session<'_>, style: &Style, tries: u64) {
    ssh_transport(s, style);
    for _ in 0..tries {
        let d = s.react(FWD);
        let n = ssh_len(s.rng.range(70, 120));
        s.record(d, FWD, &[], n); // USERAUTH_REQUEST (password)
        let d = s.react(REV) + s.rng.range(1_500_000_000, 2_600_000_000);
        s.record(d, REV, &[], ssh_len(44)); // USERAUTH_FAILURE
    }
    let d = s.react(FWD);
    s.record(d, FWD, &[], ssh_len(60)); // DISCONNECT
    let q = quick(s.rng);
    s.close(q, FWD);
}

/// A TLS record header (RFC 8446 §5.1): content type, legacy version, length.
fn tls_head(content: u8, version: [u8; 2], len: usize) -> [u8; 5] {
    let l = (len.min(16_384) as u16).to_be_bytes();
    [content, version[0], version[1], l[0], l[1]]
}

/// One failed RDP logon: X.224 (ITU-T X.224 / [MS-RDPBCGR] 2.2.1.1), TLS, CredSSP with NTLM
/// ([MS-CSSP]), rejected.
fn rdp_attempt(s: &mut Session<'_>, user: &str) {
    s.open();
    let cookie = format!("Cookie: mstshash={user}\r\n");
    let li = 6 + cookie.len() + 8;
    let mut cr = vec![3, 0];
    cr.extend_from_slice(&((4 + 1 + li) as u16).to_be_bytes());
    cr.extend_from_slice(&[li as u8, 0xe0, 0, 0, 0, 0, 0]);
    cr.extend_from_slice(cookie.as_bytes());
    cr.extend_from_slice(&[0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00]); // TLS | CredSSP
    let q = quick(s.rng);
    s.message(q, FWD, &cr);
    let cc = [3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 0x02, 0x1f, 0x08, 0x00, 0x02, 0, 0, 0];
    let d = s.react(REV);
    s.message(d, REV, &cc);
    let hello = s.rng.range(180, 320) as usize;
    let d = s.react(FWD);
    s.record(d, FWD, &tls_head(22, [3, 1], hello), hello);
    let cert = s.rng.range(1_100, 1_900) as usize;
    let d = s.react(REV);
    s.record(d, REV, &tls_head(22, [3, 3], cert), cert);
    let d = s.react(FWD);
    s.record(d, FWD, &tls_head(22, [3, 3], 150), 150); // key exchange, CCS, Finished
    let d = s.react(REV);
    s.record(d, REV, &tls_head(20, [3, 3], 46), 46); // CCS, Finished
    for (dir, len) in
        [(FWD, 90), (REV, s.rng.range(250, 380) as usize), (FWD, s.rng.range(450, 700) as usize)]
    {
        let d = s.react(dir);
        s.record(d, dir, &tls_head(23, [3, 3], len), len);
    }
    // The TSRequest with the logon failure, then the server closes.
    let d = s.react(REV) + s.rng.range(40_000_000, 300_000_000);
    s.record(d, REV, &tls_head(23, [3, 3], 60), 60);
    let q = quick(s.rng);
    s.close(q, REV);
}

/// One failed FTP login run: banner, `tries` USER/PASS pairs, QUIT.
fn ftp_attempt(s: &mut Session<'_>, tries: u64, users: &[&str]) {
    s.open();
    let d = s.react(REV);
    s.message(d, REV, b"220 (vsFTPd 3.0.5)\r\n");
    for (k, user) in users.iter().enumerate().take(tries as usize) {
        let d = s.react(FWD);
        s.message(d, FWD, format!("USER {user}\r\n").as_bytes());
        let d = s.react(REV);
        s.message(d, REV, b"331 Please specify the password.\r\n");
        let d = s.react(FWD);
        s.message(d, FWD, format!("PASS {}\r\n", PASSWORDS[k % PASSWORDS.len()]).as_bytes());
        let d = s.react(REV) + s.rng.range(1_000_000_000, 3_000_000_000);
        s.message(d, REV, b"530 Login incorrect.\r\n");
    }
    let d = s.react(FWD);
    s.message(d, FWD, b"QUIT\r\n");
    let d = s.react(REV);
    s.message(d, REV, b"221 Goodbye.\r\n");
    let q = quick(s.rng);
    s.close(q, REV);
}

/// A MySQL packet (3-byte little-endian length, sequence id, payload).
fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut out = vec![len[0], len[1], len[2], seq];
    out.extend_from_slice(payload);
    out
}

/// Printable scramble bytes, as a MySQL server sends.
fn scramble(rng: &mut Random, n: usize) -> Vec<u8> {
    (0..n).map(|_| 0x21 + rng.below(0x5e) as u8).collect()
}

/// One failed MySQL login: v10 greeting, handshake response, error 1045.
fn mysql_attempt(s: &mut Session<'_>, user: &str, attacker: IpAddr) {
    s.open();
    let mut g = vec![10u8];
    g.extend_from_slice(b"8.0.36-0ubuntu0.22.04.1\0");
    g.extend_from_slice(&(s.rng.range(1_000, 90_000) as u32).to_le_bytes());
    let part1 = scramble(s.rng, 8);
    g.extend_from_slice(&part1);
    g.push(0);
    g.extend_from_slice(&[0xff, 0xff, 0xff, 0x02, 0x00, 0xff, 0xdf, 21]);
    g.extend_from_slice(&[0; 10]);
    let part2 = scramble(s.rng, 12);
    g.extend_from_slice(&part2);
    g.push(0);
    g.extend_from_slice(b"caching_sha2_password\0");
    let d = s.react(REV);
    s.message(d, REV, &mysql_packet(0, &g));
    let mut r = Vec::new();
    r.extend_from_slice(&0x000f_a68du32.to_le_bytes()); // client capabilities
    r.extend_from_slice(&16_777_216u32.to_le_bytes()); // max packet
    r.push(0xff); // utf8mb4
    r.extend_from_slice(&[0; 23]);
    r.extend_from_slice(user.as_bytes());
    r.push(0);
    r.push(32);
    for _ in 0..4 {
        r.extend_from_slice(&s.rng.next_u64().to_le_bytes());
    }
    r.extend_from_slice(b"caching_sha2_password\0");
    let d = s.react(FWD);
    s.message(d, FWD, &mysql_packet(1, &r));
    let mut e = vec![0xff];
    e.extend_from_slice(&1045u16.to_le_bytes());
    e.extend_from_slice(b"#28000");
    e.extend_from_slice(
        format!("Access denied for user '{user}'@'{attacker}' (using password: YES)").as_bytes(),
    );
    let d = s.react(REV) + s.rng.range(1_000_000, 5_000_000);
    s.message(d, REV, &mysql_packet(2, &e));
    let q = quick(s.rng);
    s.close(q, REV);
}

/// One failed IMAP login run: greeting, `tries` LOGIN commands, LOGOUT.
fn imap_attempt(s: &mut Session<'_>, tries: u64, users: &[&str]) {
    s.open();
    let d = s.react(REV);
    s.message(
        d,
        REV,
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] \
          Dovecot (Ubuntu) ready.\r\n",
    );
    let mut tag = 1;
    for (k, user) in users.iter().enumerate().take(tries as usize) {
        let d = s.react(FWD);
        let pw = PASSWORDS[k % PASSWORDS.len()];
        s.message(d, FWD, format!("a{tag} LOGIN {user} {pw}\r\n").as_bytes());
        let d = s.react(REV) + s.rng.range(1_900_000_000, 2_200_000_000);
        s.message(d, REV, format!("a{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n").as_bytes());
        tag += 1;
    }
    let d = s.react(FWD);
    s.message(d, FWD, format!("a{tag} LOGOUT\r\n").as_bytes());
    let d = s.react(REV);
    s.message(
        d,
        REV,
        format!("* BYE Logging out\r\na{tag} OK Logout completed (0.001 + 0.000 secs).\r\n").as_bytes(),
    );
    let q = quick(s.rng);
    s.close(q, REV);
}

/// Plays `n` attempts from `t0`, paced to spread over about `span`: attempt k is due at
/// `t0 + span·k/n` (plus jitter) and starts then on the first of 2–4 parallel tasks that is
/// free (a task is busy until its last attempt ends and a short pause passed). Returns when
/// the last attempt ends and the next source port.
#[expect(clippy::too_many_arguments, reason = "one brute force's fixed parts, passed in pieces")]
fn attempts(
    rng: &mut Random,
    style: &Style,
    attacker: IpAddr,
    server: Peer,
    tag: Tag,
    t0: u64,
    n: u64,
    span: u64,
    out: &mut Vec<Pkt>,
) -> (u64, u16) {
    let tasks = rng.range(2, 4) as usize;
    let mut free = vec![t0; tasks];
    let mut sport = rng.range(32_768, 60_999 - 2 * 200) as u16;
    let users: Vec<&str> = {
        let mut u = USERS.to_vec();
        rng.shuffle(&mut u);
        u
    };
    let step = span / n.max(1);
    let mut end = t0;
    for k in 0..n {
        let due = t0 + k * step + rng.range(0, step / 2);
        let (task, &at) = free.iter().enumerate().min_by_key(|&(i, c)| (*c, i)).unwrap_or((0, &t0));
        let start = due.max(at);
        let client =
            Peer { addr: attacker, port: sport, ttl: style.client_ttl, window: 64240, external: true };
        sport = sport.wrapping_add(2);
        let conn = TcpConn::new(client, server, tag, rng);
        let tries = rng.range(1, 3);
        let user = users[k as usize % users.len()];
        let mut s = Session::new(conn, start, style.rtt, style.mss, &mut *out, &mut *rng);
        match style.service {
            Service::Ssh => ssh_attempt(&mut s, style, tries),
            Service::Rdp => rdp_attempt(&mut s, user),
            Service::Ftp => ftp_attempt(&mut s, tries, &users[k as usize % users.len()..]),
            Service::Mysql => mysql_attempt(&mut s, user, attacker),
            Service::Imap => imap_attempt(&mut s, tries, &users[k as usize % users.len()..]),
        }
        let finished = s.clock + style.rtt;
        end = end.max(finished);
        if let Some(c) = free.get_mut(task) {
            *c = finished + rng.range(50_000_000, 500_000_000);
        }
    }
    (end, sport)
}

fn style(ctx: &mut AttackCtx<'_>, service: Service) -> Style {
    Style {
        service,
        client_banner: ctx.rng.pick(SSH_CLIENTS).copied().unwrap_or(SSH_CLIENTS[0]),
        server_banner: ctx.rng.pick(SSH_SERVERS).copied().unwrap_or(SSH_SERVERS[0]),
        rtt: ctx.external_rtt(),
        mss: if ctx.v6 { 1440 } else { 1460 },
        client_ttl: ctx.external_ttl(),
    }
}

/// A brute force against one service of one mix server: `None` picks FTP, MySQL or IMAP.
pub(crate) fn brute_force(
    ctx: &mut AttackCtx<'_>,
    service: Option<Service>,
) -> Result<Planned, PlanExhausted> {
    let service =
        service.unwrap_or_else(|| [Service::Ftp, Service::Mysql, Service::Imap][ctx.rng.below(3) as usize]);
    let attacker = ctx.plan.attacker(ctx.v6)?;
    let target = ctx.plan.victim(&mut ctx.rng, ctx.v6);
    let style = style(ctx, service);
    let server = ctx.server_peer(target, service.port());
    let n = match service {
        Service::Ssh | Service::Rdp => ctx.rng.range(30, 50),
        _ => ctx.rng.range(40, 65),
    };
    let tag = ctx.tag(phase::MAIN);
    let span = ctx.rng.range(90_000_000_000, 150_000_000_000);
    let mut out = Vec::new();
    attempts(&mut ctx.rng, &style, attacker, server, tag, ctx.start, n, span, &mut out);
    Ok(Planned::eager(out, Some(attacker), Some(target), Some(service.port())))
}

/// An SSH brute force, then a long interactive session of the same attacker.
pub(crate) fn brute_force_then_session(ctx: &mut AttackCtx<'_>) -> Result<Planned, PlanExhausted> {
    let attacker = ctx.plan.attacker(ctx.v6)?;
    let target = ctx.plan.victim(&mut ctx.rng, ctx.v6);
    let style = style(ctx, Service::Ssh);
    let server = ctx.server_peer(target, 22);
    let n = ctx.rng.range(20, 40);
    let mut out = Vec::new();
    let tag = ctx.tag(phase::MAIN);
    let span = ctx.rng.range(60_000_000_000, 120_000_000_000);
    let (end, sport) = attempts(&mut ctx.rng, &style, attacker, server, tag, ctx.start, n, span, &mut out);
    let at = end + ctx.rng.range(5_000_000_000, 40_000_000_000);
    let client = Peer { addr: attacker, port: sport, ttl: style.client_ttl, window: 64240, external: true };
    let conn = TcpConn::new(client, server, ctx.tag(phase::SECOND), &mut ctx.rng);
    let mut s = Session::new(conn, at, style.rtt, style.mss, &mut out, &mut ctx.rng);
    shell_session(&mut s, &style);
    Ok(Planned::eager(out, Some(attacker), Some(target), Some(22)))
}

/// One keystroke-sized encrypted SSH packet from `dir`, `delay` after the last packet, with
/// no ACK of its own (the other side's next packet or delayed ACK covers it).
fn keystroke(s: &mut Session<'_>, delay: u64, dir: usize) {
    let x = s.clock;
    s.push(delay, dir, PSH | ACK, Data::filler(x, 36));
}

/// A successful login and an interactive shell of 2.5–6 minutes with at least 120 kB of
/// output.
fn shell_session(s: &mut Session<'_>, style: &Style) {
    let session_start = s.clock;
    ssh_transport(s, style);
    let d = s.react(FWD);
    s.record(d, FWD, &[], ssh_len(100)); // USERAUTH_REQUEST (password)
    let d = s.react(REV) + s.rng.range(20_000_000, 120_000_000);
    s.record(d, REV, &[], ssh_len(20)); // USERAUTH_SUCCESS
    let d = s.react(FWD);
    s.record(d, FWD, &[], ssh_len(60)); // CHANNEL_OPEN session
    let d = s.react(REV);
    s.record(d, REV, &[], ssh_len(40)); // CHANNEL_OPEN_CONFIRMATION
    let d = s.react(FWD);
    s.record(d, FWD, &[], ssh_len(130) + ssh_len(60) + ssh_len(40)); // pty-req, env, shell
    let d = s.react(REV);
    s.record(d, REV, &[], ssh_len(100)); // window adjust, channel success
    let motd = s.rng.range(1_100, 2_600);
    let q = quick(s.rng);
    s.record(q, REV, &[], ssh_len(motd));

    let min_duration = s.rng.range(150_000_000_000, 360_000_000_000);
    let min_output = s.rng.range(120_000, 400_000);
    let mut output = motd;
    while s.clock < session_start + min_duration || output < min_output {
        let think = s.rng.range(2_000_000_000, 12_000_000_000);
        let chars = s.rng.range(3, 40);
        for c in 0..=chars {
            let gap = if c == 0 { think } else { s.rng.range(80_000_000, 350_000_000) };
            keystroke(s, gap, FWD);
            let d = s.react(REV);
            if c < chars {
                keystroke(s, d, REV); // the echo
            }
        }
        let size = if s.rng.chance(0.2) { s.rng.range(20_000, 150_000) } else { s.rng.range(60, 4_000) };
        let late = s.clock >= session_start + min_duration;
        let size = if late && output < min_output { size.max(min_output - output + 1_000) } else { size };
        let d = s.react(REV) + s.rng.range(1_000_000, 200_000_000);
        let mut left = size;
        let mut first = true;
        // Long outputs go out in chunks of up to 16 kB, each an SSH channel-data packet.
        while left > 0 {
            let chunk = left.min(16_384);
            left -= chunk;
            let delay = if first { d } else { s.rng.range(100_000, 2_000_000) };
            first = false;
            s.record(delay, REV, &[], ssh_len(chunk));
        }
        output += size;
    }
    // `exit`: exit-status, EOF and CLOSE from the server, CLOSE from the client, then the
    // server closes the connection.
    for c in 0..5 {
        let gap = if c == 0 {
            s.rng.range(1_000_000_000, 5_000_000_000)
        } else {
            s.rng.range(80_000_000, 250_000_000)
        };
        keystroke(s, gap, FWD);
        if c < 4 {
            let d = s.react(REV);
            keystroke(s, d, REV);
        }
    }
    let d = s.react(REV);
    s.record(d, REV, &[], ssh_len(44) + ssh_len(16) + ssh_len(16));
    let d = s.react(FWD);
    s.record(d, FWD, &[], ssh_len(16));
    let q = quick(s.rng);
    s.close(q, REV);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_packets_are_padded_to_eight_with_at_least_four_bytes() {
        let mut rng = Random::attack(1, 0);
        for payload_len in 0..40 {
            let p = ssh_packet(&vec![1; payload_len]);
            assert_eq!(p.len() % 8, 0);
            let pad = usize::from(p[4]);
            assert!((4..=11).contains(&pad));
            assert_eq!(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize, p.len() - 4);
        }
        let k = ssh_kexinit(&CLIENT_KEX, &mut rng);
        assert_eq!(k[5], 20);
        assert!(k.windows(17).any(|w| w == b"curve25519-sha256"));
        assert_eq!(ssh_ecdh_init(&mut rng).len(), 48);
    }

    #[test]
    fn mysql_packets_carry_length_and_sequence() {
        let p = mysql_packet(2, b"abc");
        assert_eq!(p, [3, 0, 0, 2, b'a', b'b', b'c']);
    }
}
