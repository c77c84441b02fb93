//! Flags of `cognito-identity-gateway emulator`, checked as a whole like
//! the gateway's.

use std::net::SocketAddr;

use super::ConfigError;
use super::problems::{Problems, check_region};

/// Flags of `cognito-identity-gateway emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "COGNITO_EMULATOR_LISTEN",
        default_value = "127.0.0.1:4566"
    )]
    pub listen: String,
    /// Region the ids are made in.
    #[arg(long, env = "COGNITO_EMULATOR_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access keys accepted on the developer operation, ID:SECRET; repeat
    /// for several. Default: test:test.
    #[arg(
        long = "access-key",
        env = "COGNITO_EMULATOR_ACCESS_KEYS",
        value_delimiter = ','
    )]
    pub(crate) access_keys: Vec<String>,
    /// PEM file of the RSA key tokens are signed with; default: one made at start.
    #[arg(long, env = "COGNITO_EMULATOR_SIGNING_KEY")]
    pub(crate) signing_key: Option<std::path::PathBuf>,
    /// Faults at start, as the JSON of `PUT /_emulator/faults`.
    #[arg(long, env = "COGNITO_EMULATOR_FAULTS")]
    pub faults: Option<String>,
    /// Rate-limit every operation at Cognito's default quotas.
    #[arg(long, conflicts_with = "faults")]
    pub(crate) cognito_quotas: bool,
    /// Also create the ready pool of `--emulator` mode.
    #[arg(long)]
    pub(crate) default_pool: bool,
}

/// Checked emulator configuration.
#[derive(Debug)]
pub struct EmulatorConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its settings.
    pub settings: crate::emulator::EmulatorSettings,
    /// Whether to create the ready pool.
    pub(crate) default_pool: bool,
}

impl EmulatorArgs {
    /// Checks everything, reading the key file; lists every problem.
    pub(crate) fn into_config(self) -> Result<EmulatorConfig, ConfigError> {
        use crate::emulator::{EmulatorSettings, FaultSettings};
        let mut p = Problems::default();
        let listen = p.check(
            "listen",
            self.listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("{:?}: {e}", self.listen)),
        );
        let region = p.check("region", check_region(&self.region));
        let mut access_keys = std::collections::HashMap::new();
        for pair in &self.access_keys {
            match pair.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                    access_keys.insert(id.to_owned(), secret.to_owned());
                }
                _ => p.0.push("--access-key: expected ID:SECRET".to_owned()),
            }
        }
        if access_keys.is_empty() {
            let (id, secret) = crate::emulator::DEFAULT_ACCESS_KEY;
            access_keys.insert(id.to_owned(), secret.to_owned());
        }
        let signing_key_pem = self.signing_key.as_ref().and_then(|path| {
            p.check(
                "signing-key",
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display())),
            )
        });
        let faults = match (&self.faults, self.cognito_quotas) {
            (_, true) => Some(FaultSettings::cognito_default_quotas()),
            (Some(json), false) => p.check(
                "faults",
                serde_json::from_str::<FaultSettings>(json)
                    .map_err(|e| e.to_string())
                    .and_then(|f| f.check().map(|()| f)),
            ),
            (None, false) => Some(FaultSettings::default()),
        };
        match (listen, region, faults) {
            (Some(listen), Some(region), Some(faults)) if p.0.is_empty() => Ok(EmulatorConfig {
                listen,
                settings: EmulatorSettings {
                    region,
                    access_keys,
                    signing_key_pem,
                    faults,
                },
                default_pool: self.default_pool,
            }),
            _ => Err(ConfigError(p.0)),
        }
    }
}
