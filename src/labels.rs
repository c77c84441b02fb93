//! Label values that more than one part's metrics use.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// How something that can fail ended: the `outcome` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `ok`: done.
    Ok,
    /// `error`: not done; what is in force stays, or what was to be sent
    /// is lost.
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Outcome::Ok => "ok",
                Outcome::Error => "error",
            },
        )
    }
}

/// A series labelled by [`Outcome`] alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: Outcome,
}
