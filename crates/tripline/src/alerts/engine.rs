//! The evaluator: rules applied to file events in the order they were stored. Live
//! alerting and back-tests run this same code over the same order, so a back-test
//! says exactly what enabling the rule would have raised.
//!
//! One export is one file event however many chunks it arrived in (later chunks merge
//! into the stored event), so an export matches a rule once.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Rule;
use crate::events::FileEvent;
use crate::risk::Severity;

/// What the evaluator decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new alert, with the events that raised it (a threshold's whole window).
    Open(NewAlert),
    /// The event joins an alert still open within its rule's suppression window.
    Grow { alert_id: String, event: Contribution },
}

/// An event's part in an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Contribution {
    pub seq: i64,
    pub at: i64,
    pub rows: i64,
    /// The event's own risk (high and critical ones are what "risks not covered" checks).
    pub severity: Severity,
}

/// An alert as the evaluator raises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAlert {
    /// Derived from the rule, the user and the event that raised it: the same events
    /// evaluated again raise the same id, so a replay cannot raise it twice.
    pub id: String,
    pub rule_id: i64,
    pub rule_name: String,
    pub severity: Severity,
    pub channels: Vec<i64>,
    pub connection_id: String,
    pub user_id: String,
    pub username: Option<String>,
    pub events: Vec<Contribution>,
}

/// The alert id for a rule's alert on a user raised by an event.
pub fn alert_id(rule_id: i64, connection_id: &str, user_id: &str, event_id: &str) -> String {
    let digest = Sha256::digest(format!("{rule_id}\n{connection_id}\n{user_id}\n{event_id}").as_bytes());
    hex::encode(&digest[..12])
}

/// One user of one connection, as a rule sees them.
#[derive(Debug, Default)]
struct Group {
    /// Matching events within the threshold's window (threshold rules only).
    window: VecDeque<Contribution>,
    /// The alert still open for growth, and its last event's time.
    open: Option<(String, i64)>,
}

struct RuleState {
    rule: Rule,
    groups: HashMap<(String, String), Group>,
}

/// Rules and what they remember between events.
pub struct Evaluator {
    rules: Vec<RuleState>,
}

impl Evaluator {
    /// Evaluates the enabled `rules` (a back-test passes its one rule enabled).
    pub fn new(rules: Vec<Rule>) -> Evaluator {
        Evaluator {
            rules: rules
                .into_iter()
                .filter(|r| r.enabled)
                .map(|rule| RuleState { rule, groups: HashMap::new() })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The longest a rule looks back: how far before its position a restarted
    /// evaluator must re-read ([`Evaluator::prime`]) to pick up where it stopped.
    pub fn lookback_ms(&self) -> i64 {
        self.rules
            .iter()
            .map(|r| {
                let window = r.rule.conditions.threshold.as_ref().map_or(0, |t| t.window_minutes);
                i64::from(window.max(r.rule.suppress_minutes)) * 60_000
            })
            .max()
            .unwrap_or(0)
    }

    /// Applies the rules to the next stored event.
    pub fn observe(&mut self, e: &FileEvent) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for state in &mut self.rules {
            if let Some(d) = state.observe(e, false) {
                decisions.push(d);
            }
        }
        decisions
    }

    /// Replays an event that was evaluated before a restart: windows fill as they did,
    /// nothing is decided again.
    pub fn prime(&mut self, e: &FileEvent) {
        for state in &mut self.rules {
            state.observe(e, true);
        }
    }

    /// Forgets which alerts are open (before restoring them from what is stored).
    pub fn clear_open(&mut self) {
        for state in &mut self.rules {
            state.groups.values_mut().for_each(|g| g.open = None);
        }
    }

    /// Restores an alert that is still open (after a restart), so matches within its
    /// suppression window grow it.
    pub fn restore_open(&mut self, rule_id: i64, connection_id: &str, user_id: &str, alert_id: &str, last_at: i64) {
        for state in self.rules.iter_mut().filter(|s| s.rule.id == rule_id) {
            let group = state.groups.entry((connection_id.to_owned(), user_id.to_owned())).or_default();
            if group.open.as_ref().is_none_or(|(_, at)| *at <= last_at) {
                group.open = Some((alert_id.to_owned(), last_at));
            }
        }
    }

    /// An alert was closed, or a growth found it closed and it was replaced: matches
    /// now go to `replacement` (or open a new alert when `None`).
    pub fn replace_open(&mut self, alert_id: &str, replacement: Option<(&str, i64)>) {
        for state in &mut self.rules {
            for group in state.groups.values_mut() {
                if group.open.as_ref().is_some_and(|(id, _)| id == alert_id) {
                    group.open = replacement.map(|(id, at)| (id.to_owned(), at));
                }
            }
        }
    }
}

impl RuleState {
    fn observe(&mut self, e: &FileEvent, priming: bool) -> Option<Decision> {
        let rule = &self.rule;
        if e.seq <= rule.active_from_seq || !rule.conditions.matches(e) {
            return None;
        }
        let key = (e.connection_id.clone(), e.user_id.as_str().to_owned());
        let group = self.groups.entry(key).or_default();
        let here = Contribution { seq: e.seq, at: e.observed_at, rows: e.rows, severity: e.severity };
        let suppress_ms = i64::from(rule.suppress_minutes) * 60_000;
        if let Some((id, last_at)) = &mut group.open
            && rule.suppress_minutes > 0
            && here.at <= *last_at + suppress_ms
        {
            *last_at = (*last_at).max(here.at);
            return Some(Decision::Grow { alert_id: id.clone(), event: here });
        }
        let fires = match &rule.conditions.threshold {
            None => true,
            Some(t) => {
                let window_ms = i64::from(t.window_minutes) * 60_000;
                group.window.push_back(here);
                group.window.retain(|c| c.at > here.at - window_ms && c.at <= here.at);
                let rows: i64 = group.window.iter().map(|c| c.rows).sum();
                t.exports.is_some_and(|k| group.window.len() > k as usize) || t.rows.is_some_and(|r| rows >= r)
            }
        };
        if !fires {
            return None;
        }
        let events: Vec<Contribution> =
            if rule.conditions.threshold.is_some() { group.window.drain(..).collect() } else { vec![here] };
        let id = alert_id(rule.id, &e.connection_id, e.user_id.as_str(), &e.id);
        group.open = Some((id.clone(), here.at));
        if priming {
            return None;
        }
        Some(Decision::Open(NewAlert {
            id,
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            severity: rule.severity,
            channels: rule.channels.clone(),
            connection_id: e.connection_id.clone(),
            user_id: e.user_id.as_str().to_owned(),
            username: e.username.clone(),
            events,
        }))
    }
}

/// What a back-test found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BacktestResult {
    /// Events read (in the range).
    pub events: u64,
    /// Events the rule matched (threshold aside).
    pub matched: u64,
    pub alerts: u64,
    /// Events that grew an alert rather than raising one.
    pub grown: u64,
    /// The first alerts it would have raised.
    pub sample: Vec<NewAlert>,
}

/// How many alerts a back-test lists.
pub const BACKTEST_SAMPLE: usize = 50;

/// One rule run over stored events, in the order they were stored, as if it had been
/// enabled before the first: fed page by page.
pub struct Backtest {
    evaluator: Evaluator,
    conditions: super::Conditions,
    result: BacktestResult,
}

impl Backtest {
    pub fn new(rule: &Rule) -> Backtest {
        let mut rule = rule.clone();
        rule.enabled = true;
        rule.active_from_seq = i64::MIN;
        let conditions = rule.conditions.clone();
        Backtest { evaluator: Evaluator::new(vec![rule]), conditions, result: BacktestResult::default() }
    }

    pub fn observe(&mut self, e: &FileEvent) {
        self.result.events += 1;
        if self.conditions.matches(e) {
            self.result.matched += 1;
        }
        for decision in self.evaluator.observe(e) {
            match decision {
                Decision::Open(alert) => {
                    self.result.alerts += 1;
                    if self.result.sample.len() < BACKTEST_SAMPLE {
                        self.result.sample.push(alert);
                    }
                }
                Decision::Grow { .. } => self.result.grown += 1,
            }
        }
    }

    pub fn result(self) -> BacktestResult {
        self.result
    }
}

/// [`Backtest`] over events at hand.
pub fn backtest<'a>(rule: &Rule, events: impl IntoIterator<Item = &'a FileEvent>) -> BacktestResult {
    let mut run = Backtest::new(rule);
    events.into_iter().for_each(|e| run.observe(e));
    run.result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{Conditions, Threshold};

    fn rule(id: i64, conditions: Conditions, suppress_minutes: u32) -> Rule {
        Rule {
            id,
            name: format!("rule {id}"),
            description: String::new(),
            severity: Severity::High,
            enabled: true,
            conditions,
            channels: vec![],
            suppress_minutes,
            active_from_seq: 0,
            updated_at: 0,
            updated_by: "t".into(),
        }
    }

    fn export(seq: i64, minute: i64, rows: i64, user: u64) -> FileEvent {
        let mut e = FileEvent::sample();
        e.seq = seq;
        e.id = format!("e{seq}");
        e.observed_at = minute * 60_000;
        e.rows = rows;
        e.user_id = sfwire::id::SfId::generate(sfwire::id::prefix::USER, "0A", user);
        e
    }

    #[test]
    fn suppression_groups_a_burst_into_one_growing_alert() {
        let big = Conditions { min_rows: Some(1_000), ..Default::default() };
        let mut ev = Evaluator::new(vec![rule(1, big, 30)]);
        let first = ev.observe(&export(1, 0, 5_000, 1));
        let Some(Decision::Open(alert)) = first.first() else { panic!("opens: {first:?}") };
        assert_eq!(alert.events.len(), 1);
        assert!(ev.observe(&export(2, 10, 10, 1)).is_empty(), "small: no match");
        assert!(matches!(ev.observe(&export(3, 20, 2_000, 1))[..], [Decision::Grow { .. }]));
        assert!(matches!(ev.observe(&export(4, 21, 2_000, 2))[..], [Decision::Open(_)]), "another user");
        // 20 + 30 < 60: the window closed; a new alert.
        assert!(matches!(ev.observe(&export(5, 60, 2_000, 1))[..], [Decision::Open(_)]));
    }

    #[test]
    fn thresholds_count_exports_and_rows_per_user_within_the_window() {
        let mass = Conditions {
            threshold: Some(Threshold { window_minutes: 60, exports: Some(2), rows: None }),
            ..Default::default()
        };
        let mut ev = Evaluator::new(vec![rule(1, mass, 0)]);
        assert!(ev.observe(&export(1, 0, 1, 1)).is_empty());
        assert!(ev.observe(&export(2, 30, 1, 1)).is_empty());
        assert!(ev.observe(&export(3, 70, 1, 1)).is_empty(), "the first fell out of the window");
        let fired = ev.observe(&export(4, 80, 1, 1));
        let [Decision::Open(alert)] = &fired[..] else { panic!("{fired:?}") };
        assert_eq!(alert.events.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3, 4]);

        let rows = Conditions {
            threshold: Some(Threshold { window_minutes: 10, exports: None, rows: Some(1_000) }),
            ..Default::default()
        };
        let mut ev = Evaluator::new(vec![rule(2, rows, 0)]);
        assert!(ev.observe(&export(1, 0, 600, 1)).is_empty());
        assert_eq!(ev.observe(&export(2, 5, 400, 1)).len(), 1);
    }

    #[test]
    fn a_restarted_evaluator_continues_as_if_it_had_not_stopped() {
        let mass = Conditions {
            threshold: Some(Threshold { window_minutes: 60, exports: Some(2), rows: None }),
            ..Default::default()
        };
        let events: Vec<FileEvent> = (1..=9).map(|i| export(i, i * 5, 1, 1)).collect();
        let mut whole = Evaluator::new(vec![rule(1, mass.clone(), 30)]);
        let all: Vec<Decision> = events.iter().flat_map(|e| whole.observe(e)).collect();
        // Stopped after event 5; the restart primes from the events before, restores
        // the open alerts, then evaluates the rest.
        let mut first = Evaluator::new(vec![rule(1, mass.clone(), 30)]);
        let before: Vec<Decision> = events[..5].iter().flat_map(|e| first.observe(e)).collect();
        let mut again = Evaluator::new(vec![rule(1, mass, 30)]);
        events[..5].iter().for_each(|e| again.prime(e));
        let after: Vec<Decision> = events[5..].iter().flat_map(|e| again.observe(e)).collect();
        assert_eq!([before, after].concat(), all);
    }

    #[test]
    fn backtest_counts_what_live_evaluation_raises() {
        let big = Conditions { min_rows: Some(100), ..Default::default() };
        let events: Vec<FileEvent> = (1..=20).map(|i| export(i, i * 7, i * 10, (i % 3) as u64)).collect();
        let r = rule(1, big, 15);
        let mut live = Evaluator::new(vec![r.clone()]);
        let opened = events.iter().flat_map(|e| live.observe(e)).filter(|d| matches!(d, Decision::Open(_))).count();
        let result = backtest(&r, &events);
        assert_eq!(result.alerts as usize, opened);
        assert_eq!(result.matched, 11);
        assert_eq!(result.events, 20);
    }

    #[test]
    fn a_rule_applies_only_to_events_stored_after_it_was_enabled() {
        let mut r = rule(1, Conditions { min_rows: Some(1), ..Default::default() }, 0);
        r.active_from_seq = 5;
        let mut ev = Evaluator::new(vec![r]);
        assert!(ev.observe(&export(5, 0, 10, 1)).is_empty());
        assert_eq!(ev.observe(&export(6, 0, 10, 1)).len(), 1);
    }
}
