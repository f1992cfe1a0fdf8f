//! Coalescing SSM calls from many concurrent executions in one process.
//!
//! When thousands of `name-on-launch` executions run at once on the embedded engine, each wants
//! its own SendCommand and its own DescribeInstanceInformation polls. The [`Batcher`] turns that
//! into at most one SendCommand per 50 instances and one DescribeInstanceInformation per 50
//! watched instances per refresh:
//!
//! - *Commands*: a send only queues the request and returns a ticket; the first status check
//!   (which the state machine makes after its Wait, when every execution of the wave has queued
//!   its request) flushes the queue, grouping identical script templates and filling each group's
//!   per-instance lookup table ([`crate::scripts::TABLE_LINE`]) with up to 50 instances.
//! - *Describes*: an SSM-online check registers its instance as watched and answers from a
//!   snapshot refreshed at most every [`Batcher::REFRESH_SECONDS`] of clock time, one call per
//!   50 watched instances.
//!
//! Tickets live in this process only: a batched ticket does not survive a restart (the local
//! engine re-sends on a fresh run). Lambda invocations never share a process, so there the
//! handlers send directly and the ticket is the SSM command id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use cloud::{
    Cloud, CloudError, CommandInvocation, InstanceInformation, SEND_COMMAND_MAX_INSTANCES,
    SendCommandRequest,
};

use crate::scripts;

/// The SSM document every fleetprep command uses.
pub const DOCUMENT: &str = "AWS-RunPowerShellScript";

/// A command for one instance: a script template (with [`scripts::TABLE_LINE`]) plus the
/// instance's value for the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommandSpec {
    /// The script's lines, with the table line where the per-instance values go; commands
    /// with the same template (and timeout) share one SendCommand.
    pub template: Vec<String>,
    /// This instance's row of the table (a hostname for `rename`).
    pub value: String,
    /// SendCommand's `executionTimeout` for the script, in seconds.
    pub execution_timeout_seconds: u32,
    /// SendCommand's `Comment` (`fleetprep <kind>`).
    pub comment: String,
}

/// One queued request: (ticket, instance id, table value, queued at).
type Queued = (String, String, String, SystemTime);

#[derive(Default)]
struct State {
    next_ticket: u64,
    // Per (script template, execution timeout): (ticket, instance id, table value, queued at).
    // The key is the whole template text, so commands that differ in any line (another
    // command kind, or the same kind built differently, e.g. by another rename method) are
    // never sent together; only the table line differs within a send.
    pending: BTreeMap<(Vec<String>, u32), Vec<Queued>>,
    // The tickets in `pending`: a status check asks "still queued?" for every poll of every
    // instance, which must not scan 10,000 queued requests.
    queued: HashSet<String>,
    sent: HashMap<String, Result<(String, String), CloudError>>,
    watched: BTreeSet<String>,
    snapshot_at: Option<SystemTime>,
    snapshot: HashMap<String, InstanceInformation>,
    // The ids the last refresh asked about (absent from `snapshot` = not registered yet).
    covered: BTreeSet<String>,
}

/// See the module docs.
#[derive(Default)]
pub struct Batcher {
    state: Mutex<State>,
    // Serialises flushes and refreshes so concurrent checks do not send the same queue twice.
    flush_lock: tokio::sync::Mutex<()>,
}

impl Batcher {
    /// Maximum age of the DescribeInstanceInformation snapshot.
    pub const REFRESH_SECONDS: u64 = 10;
    /// How long a partial batch (< 50 instances) may wait for company before it is sent.
    pub const WINDOW_SECONDS: u64 = 30;

    /// A batcher with nothing queued and no instance snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a command for `instance_id` at `now`; returns the ticket to check.
    pub fn submit(&self, instance_id: &str, spec: CommandSpec, now: SystemTime) -> String {
        let mut state = self.state();
        state.next_ticket += 1;
        let ticket = format!("batch-{}", state.next_ticket);
        state.queued.insert(ticket.clone());
        state
            .pending
            .entry((spec.template, spec.execution_timeout_seconds))
            .or_default()
            .push((ticket.clone(), instance_id.to_string(), spec.value, now));
        ticket
    }

    /// Sends every full batch of 50, and partial batches whose oldest request has waited
    /// [`Self::WINDOW_SECONDS`] (or all of them when `force`).
    pub async fn flush(&self, cloud: &dyn Cloud, now: SystemTime, force: bool) {
        let _guard = self.flush_lock.lock().await;
        let window = Duration::from_secs(Self::WINDOW_SECONDS);
        let mut ready = Vec::new();
        {
            let mut state = self.state();
            for (key, entries) in state.pending.iter_mut() {
                let due = force
                    || entries
                        .first()
                        .is_some_and(|e| now.duration_since(e.3).unwrap_or_default() >= window);
                let take = if due {
                    entries.len()
                } else {
                    entries.len() - entries.len() % SEND_COMMAND_MAX_INSTANCES
                };
                if take > 0 {
                    ready.push((key.clone(), entries.drain(..take).collect::<Vec<_>>()));
                }
            }
            state.pending.retain(|_, entries| !entries.is_empty());
            for (_, entries) in &ready {
                for (ticket, _, _, _) in entries {
                    state.queued.remove(ticket);
                }
            }
        }
        for ((template, timeout), entries) in ready {
            for chunk in entries.chunks(SEND_COMMAND_MAX_INSTANCES) {
                let table: Vec<(String, String)> = chunk
                    .iter()
                    .map(|(_, id, value, _)| (id.clone(), value.clone()))
                    .collect();
                let request = SendCommandRequest {
                    instance_ids: chunk.iter().map(|(_, id, _, _)| id.clone()).collect(),
                    document_name: DOCUMENT.into(),
                    commands: scripts::render(&template, &table),
                    execution_timeout_seconds: Some(timeout),
                    comment: Some(format!("fleetprep batch of {}", chunk.len())),
                    ..SendCommandRequest::default()
                };
                let result = cloud.send_command(request).await;
                let mut state = self.state();
                for (ticket, id, _, _) in chunk {
                    let entry = match &result {
                        Ok(command_id) => Ok((command_id.clone(), id.clone())),
                        Err(error) => Err(error.clone()),
                    };
                    state.sent.insert(ticket.clone(), entry);
                }
            }
        }
    }

    fn is_queued(&self, ticket: &str) -> bool {
        self.state().queued.contains(ticket)
    }

    /// Sends what is due; `Ok(false)` while `ticket` is still waiting for its batch, and the
    /// send error if its batch failed (the state machine retries with a fresh send).
    pub async fn ensure_sent(
        &self,
        cloud: &dyn Cloud,
        ticket: &str,
        now: SystemTime,
    ) -> Result<bool, CloudError> {
        if self.is_queued(ticket) {
            // Let every execution woken at this instant queue its request first.
            tokio::task::yield_now().await;
            self.flush(cloud, now, false).await;
        }
        let mut state = self.state();
        match state.sent.get(ticket) {
            Some(Ok(_)) => Ok(true),
            Some(Err(error)) => {
                let error = error.clone();
                state.sent.remove(ticket);
                Err(error)
            }
            None if state.queued.contains(ticket) => Ok(false),
            None => Err(CloudError::not_found(
                "InvocationDoesNotExist",
                format!(
                    "ticket {ticket} is unknown to this process (batched tickets do not survive \
                     a restart); send the command again"
                ),
            )),
        }
    }

    /// The invocation behind a ticket. `Ok(None)` means "not visible yet": still waiting for
    /// its batch, or InvocationDoesNotExist right after sending.
    pub async fn check(
        &self,
        cloud: &dyn Cloud,
        ticket: &str,
        now: SystemTime,
    ) -> Result<Option<CommandInvocation>, CloudError> {
        if !self.ensure_sent(cloud, ticket, now).await? {
            return Ok(None);
        }
        let sent = self.state().sent.get(ticket).cloned();
        let Some(Ok((command_id, instance_id))) = sent else {
            return Ok(None);
        };
        match cloud
            .get_command_invocation(&command_id, &instance_id)
            .await
        {
            // Finished tickets stay answerable: several states may read the same command.
            Ok(invocation) => Ok(Some(invocation)),
            Err(error) if error.code == "InvocationDoesNotExist" => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The SSM view of `instance_id` from a snapshot no older than [`Self::REFRESH_SECONDS`];
    /// refreshing covers every watched instance, 50 per call.
    pub async fn instance_information(
        &self,
        cloud: &dyn Cloud,
        now: SystemTime,
        instance_id: &str,
    ) -> Result<Option<InstanceInformation>, CloudError> {
        let fresh = |state: &State| {
            state.snapshot_at.is_some_and(|at| {
                now.duration_since(at).unwrap_or_default()
                    < Duration::from_secs(Self::REFRESH_SECONDS)
            }) && state.covered.contains(instance_id)
        };
        {
            let mut state = self.state();
            state.watched.insert(instance_id.to_string());
            if fresh(&state) {
                return Ok(state.snapshot.get(instance_id).cloned());
            }
        }
        // Let every execution woken at this instant register first: one refresh serves all.
        tokio::task::yield_now().await;
        let _guard = self.flush_lock.lock().await;
        let watched = {
            let state = self.state();
            if fresh(&state) {
                return Ok(state.snapshot.get(instance_id).cloned());
            }
            state.watched.iter().cloned().collect::<Vec<_>>()
        };
        let mut snapshot = HashMap::new();
        for chunk in watched.chunks(50) {
            for info in cloud.describe_instance_information(chunk).await? {
                snapshot.insert(info.instance_id.clone(), info);
            }
        }
        let mut state = self.state();
        state.snapshot = snapshot;
        state.snapshot_at = Some(now);
        state.covered = watched.into_iter().collect();
        Ok(state.snapshot.get(instance_id).cloned())
    }

    /// Stops watching an instance (it is online, or its workflow ended).
    pub fn unwatch(&self, instance_id: &str) {
        self.state().watched.remove(instance_id);
    }
}
