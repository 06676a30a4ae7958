//! Vigil `alert`: evaluates alert rules on CloudWatch metrics and CloudWatch alarm changes, and
//! notifies through SNS.
//!
//! A reader finds each concern by name:
//! - [`rules`]: the rules file, validated at load; [`policy`]: routes, grouping, silences,
//!   inhibition, the Watchdog, which alarms opt in;
//! - [`slo`]: objectives compiled to burn-rate rules; [`budget`]: the error budget left;
//! - [`evaluate`]: outcomes (CloudWatch's M of N and missing data), targets (`*` series),
//!   queries; [`state`]: the per-series state machine;
//! - [`message`]: what notifications say, split and cut to fit SNS; [`receiver`]: where else
//!   they go (chat and SMS topics, PagerDuty, Alertmanager webhooks), one format per file;
//! - [`outbox`]: the state file in S3, conditional updates, claims with leases, delivery;
//! - [`run`]: load → read → a pure step of all rules → commit → deliver;
//! - [`alarm`]: CloudWatch alarm changes; [`handler`]: the Lambda entry points;
//!   [`config`]: the environment.
//!
//! `main.rs` only wires the handler to the Lambda runtime and the AWS clients.

pub mod alarm;
pub mod budget;
pub mod config;
pub mod evaluate;
pub mod handler;
pub mod history;
pub mod message;
pub mod outbox;
pub mod policy;
pub mod quiet;
pub mod receiver;
pub mod review;
pub mod rule_files;
pub mod rules;
pub mod run;
pub mod silence;
pub mod slo;
pub mod state;
pub mod time_interval;

pub use config::{AlertConfig, env};
pub use evaluate::{
    Outcome, Target, alert_labels, evaluate, observe, query_for, query_for_series, read_start,
    targets,
};
pub use handler::{Call, handle_event, heartbeat_line};
pub use message::{notification, notification_for, render};
pub use outbox::{StateFile, StateLocation};
pub use rules::{MissingData, Rule, lint, load, load_file, load_set};
pub use run::{Invocation, Plan, RuleResult, RunSummary, run};
