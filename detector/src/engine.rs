//! The per-worker detector: runs every rule over each decoded packet.

use std::sync::Arc;

use outpost_decode::{Nanos, PacketMeta};

use crate::alert::{Alert, AlertDetail, AlertId};
use crate::machine::{MachineRunner, MachineStats};
use crate::rules::{RuleId, RuleSet};

/// Per-rule counters of a worker (or, merged, of the sensor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// State-machine counters, by rule id.
    pub machines: Vec<MachineStats>,
    /// Alerts raised.
    pub alerts: u64,
}

impl DetectorStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &DetectorStats) {
        if self.machines.len() < o.machines.len() {
            self.machines.resize(o.machines.len(), MachineStats::default());
        }
        for (a, b) in self.machines.iter_mut().zip(&o.machines) {
            a.merge(b);
        }
        self.alerts += o.alerts;
    }
}

/// One worker's detection state: a runner per rule. Owned by one thread; no locks.
#[derive(Debug)]
pub struct Detector {
    rules: Arc<RuleSet>,
    machines: Vec<MachineRunner>,
    run_key: u64,
    now: Nanos,
    alerts: u64,
}

impl Detector {
    /// Fresh state for `rules`. `run_key` identifies the run in alert ids (see
    /// [`AlertId::derive`]).
    #[must_use]
    pub fn new(rules: Arc<RuleSet>, run_key: u64) -> Detector {
        let machines = rules.state_machines.iter().map(MachineRunner::new).collect();
        Detector { rules, machines, run_key, now: Nanos::ZERO, alerts: 0 }
    }

    /// Runs every rule over one packet; `frame` is its input frame number. Alerts go to `out`.
    #[inline]
    pub fn on_packet(&mut self, meta: &PacketMeta, frame: u64, out: &mut impl FnMut(Alert)) {
        if meta.ts > self.now {
            self.now = meta.ts;
        }
        for (i, (rule, runner)) in self.rules.state_machines.iter().zip(self.machines.iter_mut()).enumerate()
        {
            let Some(event) = rule.classify(meta) else { continue };
            if let Some(bad) = runner.on_event(rule, meta.src, event, meta.ts) {
                let rule_id = RuleId(u16::try_from(i).unwrap_or(u16::MAX));
                self.alerts += 1;
                out(Alert {
                    id: AlertId::derive(self.run_key, frame, rule_id, &meta.src),
                    ts: meta.ts,
                    rule: rule_id,
                    frame,
                    src: meta.src,
                    dst: meta.dst,
                    src_port: meta.src_port,
                    dst_port: meta.dst_port,
                    ip_proto: meta.ip_proto,
                    vlan: (meta.vlan_count > 0).then_some(meta.vlan[0]),
                    detail: AlertDetail::InvalidTransition {
                        state: bad.state,
                        event: bad.event,
                        events_before: bad.events_before,
                        started: bad.started,
                    },
                });
            }
        }
    }

    /// Event time advanced to `now`: expire idle state.
    pub fn on_clock(&mut self, now: Nanos) {
        if now > self.now {
            self.now = now;
        }
        for m in &mut self.machines {
            m.expire(self.now);
        }
    }

    /// The worker's clock (latest packet or tick time).
    #[must_use]
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> DetectorStats {
        DetectorStats {
            machines: self.machines.iter().map(|m| m.stats.clone()).collect(),
            alerts: self.alerts,
        }
    }
}
