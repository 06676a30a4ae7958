//! `vigil`: what engineers run before and after they deploy, on the functions' own code.
//! Rules are checked, unit-tested and backtested with the alert function's evaluator;
//! backups are verified with backup-verify's checks.

pub mod backtest;
pub mod progress;
pub mod rules_test;
pub mod sim;
pub mod style;
pub mod values;
