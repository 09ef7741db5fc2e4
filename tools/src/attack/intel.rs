//! `intel-contact`: a benign-looking HTTPS conversation with an address on the intel list.
//!
//! Seven times in ten a mix server beacons out to the listed address (1–3 short TLS
//! connections to its port 443, 15–45 s apart: ClientHello, the server's hello and
//! certificate, key exchange, one request and its response, FIN close); otherwise the listed
//! address connects in to port 443 of the server once with the same exchange. Nothing in it
//! is anomalous but the address: `intel-match` alerts on its first packet. The truth's
//! `attacker` is the listed address, `target` the server, `port` 443.

use super::ctx::{AttackCtx, Planned};
use super::packet::{FWD, Peer, REV, Session, TcpConn, phase, quick};
use super::plan::{PlanExhausted, public_address};

/// A TLS 1.2/1.3-looking exchange over `s` (not yet open), closed by the client.
fn https(s: &mut Session<'_>) {
    s.open();
    let head = |t: u8, len: usize| {
        let l = (len as u16).to_be_bytes();
        [t, 3, if t == 22 { 1 } else { 3 }, l[0], l[1]]
    };
    let q = quick(s.rng);
    s.record(q, FWD, &head(22, 512), 512); // ClientHello
    let cert = s.rng.range(2_400, 4_200) as usize;
    let d = s.react(REV);
    s.record(d, REV, &head(22, cert), cert); // ServerHello, Certificate, ...
    let d = s.react(FWD);
    s.record(d, FWD, &head(22, 120), 120); // key exchange, Finished
    let d = s.react(REV);
    s.record(d, REV, &head(22, 280), 280); // session ticket, Finished
    let req = s.rng.range(250, 700) as usize;
    let q = quick(s.rng);
    s.record(q, FWD, &head(23, req), req);
    let resp = s.rng.range(300, 6_000) as usize;
    let d = s.react(REV) + s.rng.range(5_000_000, 80_000_000);
    s.record(d, REV, &head(23, resp.min(16_384)), resp);
    let d = s.react(FWD) + s.rng.range(10_000_000, 400_000_000);
    s.close(d, FWD);
}

/// Plans one intel contact with `ctx.listed` (drawn from the public space when missing).
pub(crate) fn intel_contact(ctx: &mut AttackCtx<'_>) -> Result<Planned, PlanExhausted> {
    let listed = ctx.listed.unwrap_or_else(|| public_address(&mut ctx.rng, ctx.v6, ctx.intel));
    let server = ctx.plan.victim(&mut ctx.rng, ctx.v6);
    let rtt = ctx.external_rtt();
    let mss = if ctx.v6 { 1440 } else { 1460 };
    let tag = ctx.tag(phase::MAIN);
    let outbound = ctx.rng.chance(0.7);
    let listed_ttl = ctx.external_ttl();
    let connections = if outbound { ctx.rng.range(1, 3) } else { 1 };
    let mut sport = ctx.rng.range(32_768, 60_000) as u16;
    let mut out = Vec::new();
    let mut t = ctx.start;
    for _ in 0..connections {
        let (client, srv) = if outbound {
            let c = Peer { addr: server, port: sport, ttl: 64, window: 64240, external: false };
            let s = Peer { addr: listed, port: 443, ttl: listed_ttl, window: 65535, external: true };
            (c, s)
        } else {
            let c = Peer { addr: listed, port: sport, ttl: listed_ttl, window: 64240, external: true };
            (c, ctx.server_peer(server, 443))
        };
        sport = sport.wrapping_add(ctx.rng.range(1, 40) as u16);
        let conn = TcpConn::new(client, srv, tag, &mut ctx.rng);
        let mut s = Session::new(conn, t, rtt, mss, &mut out, &mut ctx.rng);
        https(&mut s);
        t = s.clock + ctx.rng.range(15_000_000_000, 45_000_000_000);
    }
    Ok(Planned::eager(out, Some(listed), Some(server), Some(443)))
}
