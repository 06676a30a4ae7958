//! `vigil`: what engineers run before and after they deploy, on the functions' own code.
//! Rules are checked, unit-tested and backtested with the alert function's evaluator, and a
//! backtest is scored against the team's incidents; backups are verified with backup-verify's
//! checks; silences are added, listed and expired, and what fires is listed, as amtool does
//! for Alertmanager.

pub mod alerts;
pub mod backtest;
pub mod coin;
pub mod incidents;
pub mod pack;
pub mod pack_add;
pub mod pack_week;
pub mod progress;
pub mod rules_test;
pub mod scenario;
pub mod score;
pub mod sent;
pub mod silences;
pub mod sim;
pub mod style;
pub mod values;
