//! Vigil's own signals cannot be forged or looped through ingest.
//!
//! - Vigil's own namespace (`Vigil`, or `VIGIL_SELF_NAMESPACE`) and the namespaces under it
//!   (`Vigil/...`) hold the heartbeat the dead man's switch watches and the functions' own
//!   metrics: no sender writes there, whether by a JSON push, a remote-write mapping, a log rule
//!   or an EMF line in a subscribed log group. A configuration that names one is refused at
//!   load, a request or line that names one is refused with the reason.
//! - A log batch from ingest's own log group is skipped and counted: a subscription on it would
//!   otherwise feed ingest its own report lines, for ever.
//! - EMF lines in a Lambda function's log group (`/aws/lambda/...`) were already extracted by
//!   CloudWatch when the function wrote them: ingesting them again would count every value
//!   twice. They are refused unless the configuration opts in (`logs.emf_from_lambda: true`,
//!   for a function whose EMF CloudWatch does not extract).

use vigil_shared::metric::Rejection;

/// Where a Lambda function's log group is unless the function names another.
pub const LAMBDA_LOG_GROUP_PREFIX: &str = "/aws/lambda/";

/// What ingest refuses to write or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Vigil's own namespace.
    pub own_namespace: String,
    /// Ingest's own log group (`AWS_LAMBDA_LOG_GROUP_NAME`, which Lambda sets).
    pub own_log_group: Option<String>,
    /// Whether EMF from `/aws/lambda/` log groups is ingested.
    pub emf_from_lambda: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            own_namespace: "Vigil".to_owned(),
            own_log_group: None,
            emf_from_lambda: false,
        }
    }
}

/// Why a log batch is not read at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkippedBatch {
    /// From ingest's own log group.
    OwnLogGroup,
}

impl SkippedBatch {
    pub fn reason(self) -> &'static str {
        match self {
            SkippedBatch::OwnLogGroup => "own_log_group",
        }
    }
}

impl Guard {
    /// `Err` when `namespace` is Vigil's own or under it (matched without regard to case:
    /// CloudWatch namespaces are case-sensitive, a look-alike is refused all the same).
    pub fn namespace(&self, namespace: &str) -> Result<(), Rejection> {
        let own = self.own_namespace.to_ascii_lowercase();
        let ns = namespace.trim().to_ascii_lowercase();
        if ns == own || ns.starts_with(&format!("{own}/")) {
            Err(Rejection::VigilNamespace(namespace.to_owned()))
        } else {
            Ok(())
        }
    }

    /// Whether a batch from `log_group` is skipped whole.
    pub fn log_batch(&self, log_group: &str) -> Option<SkippedBatch> {
        (self.own_log_group.as_deref() == Some(log_group)).then_some(SkippedBatch::OwnLogGroup)
    }

    /// Whether EMF lines of `log_group` are ingested.
    pub fn emf_from(&self, log_group: &str) -> bool {
        self.emf_from_lambda || !log_group.starts_with(LAMBDA_LOG_GROUP_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vigil_namespaces_are_refused_others_kept() {
        let g = Guard::default();
        for own in ["Vigil", "vigil", "Vigil/alert", " VIGIL "] {
            assert!(g.namespace(own).is_err(), "{own}");
        }
        for other in ["Service", "Vigilant", "Shop/Vigil", "Prometheus"] {
            assert!(g.namespace(other).is_ok(), "{other}");
        }
        let renamed = Guard {
            own_namespace: "Ops/Vigil".into(),
            ..Guard::default()
        };
        assert!(renamed.namespace("Ops/Vigil/backup").is_err());
        assert!(renamed.namespace("Vigil").is_ok());
        let reason = g.namespace("Vigil").expect_err("own").reason();
        assert_eq!(reason, "vigil_namespace");
    }

    #[test]
    fn own_log_group_and_lambda_emf() {
        let g = Guard {
            own_log_group: Some("vigil-prod-IngestLogGroup-1A2B".into()),
            ..Guard::default()
        };
        assert_eq!(
            g.log_batch("vigil-prod-IngestLogGroup-1A2B"),
            Some(SkippedBatch::OwnLogGroup)
        );
        assert_eq!(g.log_batch("/aws/eks/shop/cluster"), None);
        assert!(!g.emf_from("/aws/lambda/checkout"));
        assert!(g.emf_from("/ecs/checkout"));
        let opted = Guard {
            emf_from_lambda: true,
            ..g
        };
        assert!(opted.emf_from("/aws/lambda/checkout"));
    }

    proptest! {
        #[test]
        fn any_namespace_under_vigils_is_refused(rest in "[A-Za-z0-9/_.-]{0,40}") {
            let g = Guard::default();
            let namespace = format!("Vigil/{rest}");
            prop_assert!(g.namespace(&namespace).is_err(), "{} was let through", namespace);
        }
    }
}
