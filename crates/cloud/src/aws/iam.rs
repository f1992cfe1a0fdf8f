//! The recorder that proves [`crate::iam`]'s table right on the AWS side.
//!
//! The table of IAM actions per [`crate::Cloud`] operation is [`crate::iam::Operation`]
//! (outside the `aws` feature, re-exported here). [`CallRecorder`] is fed by an SDK interceptor
//! that notes every request's service and operation as the IAM action it is authorised as
//! ([`actions_for_call`]); the AWS tests run each Cloud operation against a local endpoint and
//! assert that every recorded action is declared for that operation, so a new SDK call cannot
//! ship without its permission.

use std::sync::Mutex;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::ConfigBag;

pub use crate::iam::{
    ENGINE_MODE_ACTIONS, Operation, actions_for_call, iam_actions, policy_actions,
};

/// Collects the IAM actions of every SDK call made through clients that carry it.
#[derive(Debug, Default)]
pub struct CallRecorder {
    calls: Mutex<Vec<String>>,
}

impl CallRecorder {
    /// The actions recorded since the last `take`, in call order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, service: &str, operation: &str) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(actions_for_call(service, operation));
    }
}

/// The SDK interceptor that feeds a [`CallRecorder`].
#[derive(Debug)]
pub(crate) struct RecordingInterceptor(pub(crate) std::sync::Arc<CallRecorder>);

impl Intercept for RecordingInterceptor {
    fn name(&self) -> &'static str {
        "fleetprep-iam-recorder"
    }

    // Not `read_before_execution`: client interceptors see that hook before the operation's
    // configuration (and so its Metadata) is in the bag. Serialization happens once per call,
    // before any retry.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.0.record(metadata.service(), metadata.name());
        }
        Ok(())
    }
}
