//! API rate limits of the simulated services: one token bucket per throttling class, refilled
//! on the simulation's clock, as AWS implements them ("uses the token bucket algorithm to
//! implement API throttling": EC2 API reference, "Request throttling for the Amazon EC2 API";
//! Amazon EC2 Auto Scaling API reference, "Welcome", API request rate).
//!
//! Where AWS publishes the sizes (EC2) they are used as published. Where it does not, the
//! figure below is a conservative choice of ours, marked as such: a workflow that stays within
//! a smaller budget than the real one stays within the real one too.

use std::time::SystemTime;

/// A throttling class: the bucket it draws from and the error a throttled call gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Quota {
    /// Operations in the same class share one bucket.
    pub class: &'static str,
    /// Tokens the bucket holds when full (the burst).
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
    /// The AWS error code of a throttled call.
    pub error_code: &'static str,
    /// The AWS error message of a throttled call.
    pub message: &'static str,
}

/// Auto Scaling's shared bucket: its burst (our choice, see [`quota`]).
pub(crate) const AUTO_SCALING_BURST: f64 = 200.0;
/// Auto Scaling's shared bucket: tokens added per second (our choice, see [`quota`]).
pub(crate) const AUTO_SCALING_PER_SECOND: f64 = 100.0;

/// The quota an operation (`service:Action`) is throttled by, if the simulation limits it.
pub(crate) fn quota(operation: &str) -> Option<Quota> {
    let (service, action) = operation.split_once(':')?;
    match service {
        // "Request throttling for the Amazon EC2 API": request token buckets per API class
        // (non-mutating Describe*/Get* 100 tokens, 20/s; RunInstances 1000, 2/s; mutating
        // actions 200, 5/s).
        "ec2" => {
            let (class, capacity, refill_per_second) =
                if action.starts_with("Describe") || action.starts_with("Get") {
                    ("ec2:non-mutating", 100.0, 20.0)
                } else if action == "RunInstances" {
                    ("ec2:run-instances", 1000.0, 2.0)
                } else {
                    ("ec2:mutating", 200.0, 5.0)
                };
            Some(Quota {
                class,
                capacity,
                refill_per_second,
                error_code: "RequestLimitExceeded",
                message: "Request limit exceeded.",
            })
        }
        // "AWS Systems Manager endpoints and quotas" publishes throughput only for Parameter
        // Store (40 transactions per second by default, shared by GetParameter, GetParameters
        // and GetParametersByPath). For Run Command and DescribeInstanceInformation it
        // publishes no rate: OUR CONSERVATIVE CHOICE is a bucket per action of 20 tokens
        // refilled at 10 per second (SendCommand: 5 per second), a quarter of Parameter
        // Store's default rate or less. Throttled calls fail with ThrottlingException,
        // "Rate exceeded", as SSM answers.
        "ssm" => {
            let (class, capacity, refill_per_second) = match action {
                "SendCommand" => ("ssm:SendCommand", 20.0, 5.0),
                "ListCommandInvocations" => ("ssm:ListCommandInvocations", 20.0, 10.0),
                "GetCommandInvocation" => ("ssm:GetCommandInvocation", 20.0, 10.0),
                "DescribeInstanceInformation" => ("ssm:DescribeInstanceInformation", 20.0, 10.0),
                _ => return None,
            };
            Some(Quota {
                class,
                capacity,
                refill_per_second,
                error_code: "ThrottlingException",
                message: "Rate exceeded",
            })
        }
        // Amazon EC2 Auto Scaling "uses the token bucket algorithm to implement API
        // throttling" and "throttles API requests based on a shared API bucket" for all its
        // operations (Amazon EC2 Auto Scaling API Reference, "Welcome", API request rate; "My
        // Auto Scaling API calls are throttled", AWS Knowledge Center). It publishes neither
        // the bucket's size nor its refill rate: OUR CHOICE is one bucket of
        // AUTO_SCALING_BURST tokens refilled at AUTO_SCALING_PER_SECOND, the size of EC2's
        // mutating class ("Request throttling for the Amazon EC2 API": 200 tokens), shared
        // by every action as Auto Scaling's is. Throttled calls fail with Throttling, "Rate
        // exceeded", as Auto Scaling answers. The workflows stay within it by pacing themselves: a
        // lifecycle heartbeat only when the hook could time out before the next poll, and a
        // throttled CompleteLifecycleAction waits a jittered backoff that grows with the time
        // spent trying (`workflows::handlers::heartbeat_due`, `completion_backoff`).
        "autoscaling" => Some(Quota {
            class: "autoscaling",
            capacity: AUTO_SCALING_BURST,
            refill_per_second: AUTO_SCALING_PER_SECOND,
            error_code: "Throttling",
            message: "Rate exceeded",
        }),
        _ => None,
    }
}

/// One token bucket, refilled lazily whenever it is drawn from.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: SystemTime,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(quota: &Quota, now: SystemTime) -> Self {
        Bucket {
            tokens: quota.capacity,
            at: now,
        }
    }

    /// Takes one token at `now`; false (and nothing taken) when the bucket is empty.
    pub fn take(&mut self, quota: &Quota, now: SystemTime) -> bool {
        let elapsed = now
            .duration_since(self.at)
            .unwrap_or_default()
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * quota.refill_per_second).min(quota.capacity);
        self.at = self.at.max(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_refill_rate() {
        let quota = quota("ssm:SendCommand").unwrap();
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut bucket = Bucket::full(&quota, start);
        let burst = (0..100).filter(|_| bucket.take(&quota, start)).count();
        assert_eq!(burst, quota.capacity as usize);
        // One second later: the refill, no more.
        let later = start + Duration::from_secs(1);
        let refilled = (0..100).filter(|_| bucket.take(&quota, later)).count();
        assert_eq!(refilled, quota.refill_per_second as usize);
    }

    #[test]
    fn ec2_ssm_and_auto_scaling_are_limited_with_their_own_error_codes() {
        assert_eq!(
            quota("ec2:DescribeInstances").unwrap().error_code,
            "RequestLimitExceeded"
        );
        assert_eq!(
            quota("ssm:ListCommandInvocations").unwrap().error_code,
            "ThrottlingException"
        );
        // One bucket for every Auto Scaling operation.
        let complete = quota("autoscaling:CompleteLifecycleAction").unwrap();
        let heartbeat = quota("autoscaling:RecordLifecycleActionHeartbeat").unwrap();
        assert_eq!(complete.class, heartbeat.class);
        assert_eq!(complete.error_code, "Throttling");
        assert_eq!(quota("dynamodb:GetItem"), None);
    }
}
