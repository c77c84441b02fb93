//! What a reload did, said in the log and counted by outcome.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::labels::{Outcome, OutcomeLabel};

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The files are as they were.
    Unchanged,
    /// What they hold is in force.
    Replaced,
    /// They do not load (why); what was in force stays.
    Refused(String),
}

/// The reloads of one kind of file that changed something, by outcome
/// (`ok`, `error`): a counter family its owner registers under its name.
#[derive(Clone, Debug, Default)]
pub struct Reloads(Family<OutcomeLabel, Counter>);

impl Reloads {
    /// Registers the family as `name` (which gains `_total`), each outcome
    /// at 0.
    pub fn register(&self, registry: &mut Registry, name: &str, help: &str) {
        for outcome in [Outcome::Ok, Outcome::Error] {
            let _ = self.0.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(name, help, self.0.clone());
    }

    /// Says what `reloaded` did to `what` (in a log line) and counts it.
    pub fn report(&self, what: &str, reloaded: Reloaded) {
        let outcome = match reloaded {
            Reloaded::Unchanged => return,
            Reloaded::Replaced => {
                tracing::info!("{what} reloaded");
                Outcome::Ok
            }
            Reloaded::Refused(why) => {
                tracing::warn!("the {what} in force stays: {why}");
                Outcome::Error
            }
        };
        self.0.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}
