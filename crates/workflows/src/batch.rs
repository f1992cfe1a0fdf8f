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
//! - *Describes*: an SSM-online check answers from a snapshot of its instance no older than
//!   [`Batcher::REFRESH_SECONDS`] of clock time; the checks made at one instant whose
//!   snapshots are older are refreshed together, one call per 50 of them; the last call's
//!   spare places go to other watched instances (round robin), whose own checks then find a
//!   fresh answer.
//! - *Status*: a command-status check answers from one ListCommandInvocations of the whole
//!   command (up to 50 instances), refreshed at most every [`Batcher::REFRESH_SECONDS`];
//!   GetCommandInvocation is called only for a finished invocation whose listed output is
//!   not the whole of it (a failure's standard error, or output cut at
//!   [`cloud::LIST_COMMAND_OUTPUT_MAX_CHARS`]).
//!
//! Throttling costs one call, not one per check: after a throttled call the batcher makes no
//! call of that kind for [`Batcher::THROTTLE_PAUSE_SECONDS`], and a throttled send stays
//! queued. A check whose answer throttling held back fails with the throttling error, so the
//! poll's Retry (full jitter) tries again at a random later instant. Answering "not yet" and
//! polling after the usual Wait would not do: a fleet launched at once polls in step, at
//! instants each of which a bucket admits only its burst of (20 DescribeInstanceInformation
//! calls cover 1,000 of 100,000 instances), while retries spread over time draw on the
//! bucket's refill as well.
//!
//! Tickets live in this process only: a batched ticket does not survive a restart (the local
//! engine re-sends on a fresh run). Lambda invocations never share a process, so there the
//! handlers send directly and the ticket is the SSM command id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use cloud::{
    Cloud, CloudError, CommandInvocation, CommandStatus, ErrorKind, InstanceInformation,
    LIST_COMMAND_OUTPUT_MAX_CHARS, SEND_COMMAND_MAX_INSTANCES, SendCommandRequest,
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
    // Instances whose check found no fresh snapshot: the next refresh covers them.
    asking: BTreeSet<String>,
    // Every instance an SSM-online check is waiting for, and where the next refresh's
    // padding resumes (see `instance_information`).
    watched: BTreeSet<String>,
    describe_cursor: String,
    // Per instance: when a refresh last asked about it, and the answer (None = not
    // registered yet).
    described: HashMap<String, (SystemTime, Option<InstanceInformation>)>,
    // Per command id: when it was last listed, and its invocations by instance id.
    listed: HashMap<String, (SystemTime, HashMap<String, CommandInvocation>)>,
    // No call of a kind before this time: the last one was throttled.
    paused_until: HashMap<Kind, SystemTime>,
}

/// The kinds of call the batcher makes, for pausing after throttling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Send,
    Describe,
    List,
}

impl State {
    fn paused(&self, kind: Kind, now: SystemTime) -> bool {
        self.paused_until
            .get(&kind)
            .is_some_and(|until| now < *until)
    }

    /// Up to `spare` watched instances, not asking and without a fresh snapshot, in round
    /// robin from where the last padding stopped.
    fn padding(&mut self, spare: usize, now: SystemTime) -> Vec<String> {
        let fresh = |at: &SystemTime| {
            now.duration_since(*at).unwrap_or_default()
                < Duration::from_secs(Batcher::REFRESH_SECONDS)
        };
        let mut out = Vec::with_capacity(spare);
        let cursor = std::mem::take(&mut self.describe_cursor);
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let after = self
            .watched
            .range::<str, _>((Excluded(cursor.as_str()), Unbounded));
        let before = self
            .watched
            .range::<str, _>((Unbounded, Included(cursor.as_str())));
        // Bounded work per refresh however many instances are watched and fresh.
        for id in after.chain(before).take(spare * 4) {
            if out.len() >= spare {
                break;
            }
            let described_fresh = self.described.get(id).is_some_and(|(at, _)| fresh(at));
            if self.asking.contains(id) || described_fresh {
                continue;
            }
            out.push(id.clone());
        }
        self.describe_cursor = out.last().cloned().unwrap_or(cursor);
        out
    }

    /// The error a check gets while calls of `kind` are paused.
    fn throttled(&self, kind: Kind) -> CloudError {
        CloudError::throttled(
            "ThrottlingException",
            format!("Rate exceeded ({kind:?} calls paused after throttling; poll again later)"),
        )
    }

    fn pause(&mut self, kind: Kind, now: SystemTime) {
        self.paused_until.insert(
            kind,
            now + Duration::from_secs(Batcher::THROTTLE_PAUSE_SECONDS),
        );
    }
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
    /// After a throttled call, how long to make no other call of its kind.
    pub const THROTTLE_PAUSE_SECONDS: u64 = 1;

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
            if state.paused(Kind::Send, now) {
                return;
            }
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
        let mut throttled = false;
        for ((template, timeout), entries) in ready {
            for chunk in entries.chunks(SEND_COMMAND_MAX_INSTANCES) {
                if throttled {
                    // Back in the queue, in order, for the next flush.
                    self.requeue(&template, timeout, chunk);
                    continue;
                }
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
                if let Err(error) = &result
                    && error.kind == ErrorKind::Throttled
                {
                    throttled = true;
                    self.state().pause(Kind::Send, now);
                    self.requeue(&template, timeout, chunk);
                    continue;
                }
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

    /// Puts a chunk whose send was throttled back at the front of its queue.
    fn requeue(&self, template: &[String], timeout: u32, chunk: &[Queued]) {
        let mut state = self.state();
        for (ticket, _, _, _) in chunk {
            state.queued.insert(ticket.clone());
        }
        let queue = state
            .pending
            .entry((template.to_vec(), timeout))
            .or_default();
        queue.splice(0..0, chunk.iter().cloned());
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
            // Held back by throttling, not waiting for company: poll again later.
            None if state.queued.contains(ticket) && state.paused(Kind::Send, now) => {
                Err(state.throttled(Kind::Send))
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
        let Some(listed) = self.listed(cloud, &command_id, &instance_id, now).await? else {
            return Ok(None);
        };
        // The listing shows the plugin's Output, cut at 2,500 characters and with standard
        // error folded in: a finished invocation that needs more is read whole.
        let partial = listed.status.is_terminal()
            && (listed.status != CommandStatus::Success
                || listed.stdout.chars().count() >= LIST_COMMAND_OUTPUT_MAX_CHARS);
        if !partial {
            return Ok(Some(listed));
        }
        match cloud
            .get_command_invocation(&command_id, &instance_id)
            .await
        {
            // Finished tickets stay answerable: several states may read the same command.
            Ok(invocation) => Ok(Some(invocation)),
            Err(error) => Err(error),
        }
    }

    /// The invocation of `command_id` on `instance_id` from a listing of the whole command no
    /// older than [`Self::REFRESH_SECONDS`]; `Ok(None)` while it is not visible.
    async fn listed(
        &self,
        cloud: &dyn Cloud,
        command_id: &str,
        instance_id: &str,
        now: SystemTime,
    ) -> Result<Option<CommandInvocation>, CloudError> {
        let cached = |state: &State| {
            state.listed.get(command_id).and_then(|(at, invocations)| {
                let fresh = now.duration_since(*at).unwrap_or_default()
                    < Duration::from_secs(Self::REFRESH_SECONDS);
                // A finished invocation does not change: no need to list it again.
                let answer = invocations.get(instance_id);
                (fresh || answer.is_some_and(|i| i.status.is_terminal())).then(|| answer.cloned())
            })
        };
        if let Some(answer) = cached(&self.state()) {
            return Ok(answer);
        }
        // Let every execution woken at this instant ask first: one listing serves them all.
        tokio::task::yield_now().await;
        let _guard = self.flush_lock.lock().await;
        {
            let state = self.state();
            if let Some(answer) = cached(&state) {
                return Ok(answer);
            }
            if state.paused(Kind::List, now) {
                return Err(state.throttled(Kind::List));
            }
        }
        let invocations = match cloud.list_command_invocations(command_id).await {
            Ok(invocations) => invocations,
            Err(error) if error.kind == ErrorKind::Throttled => {
                self.state().pause(Kind::List, now);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let by_instance: HashMap<String, CommandInvocation> = invocations
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect();
        let answer = by_instance.get(instance_id).cloned();
        self.state()
            .listed
            .insert(command_id.to_string(), (now, by_instance));
        Ok(answer)
    }

    /// The SSM view of `instance_id` from a refresh no older than [`Self::REFRESH_SECONDS`];
    /// a refresh covers every instance asked about at this instant without a fresh answer,
    /// 50 per call. The throttling error when throttling held its refresh back.
    pub async fn instance_information(
        &self,
        cloud: &dyn Cloud,
        now: SystemTime,
        instance_id: &str,
    ) -> Result<Option<InstanceInformation>, CloudError> {
        let cached = |state: &State| {
            state.described.get(instance_id).and_then(|(at, info)| {
                (now.duration_since(*at).unwrap_or_default()
                    < Duration::from_secs(Self::REFRESH_SECONDS))
                .then(|| info.clone())
            })
        };
        {
            let mut state = self.state();
            if let Some(answer) = cached(&state) {
                return Ok(answer);
            }
            state.asking.insert(instance_id.to_string());
            state.watched.insert(instance_id.to_string());
        }
        // Let every execution woken at this instant ask first: one refresh serves all.
        tokio::task::yield_now().await;
        let _guard = self.flush_lock.lock().await;
        let order = {
            let mut state = self.state();
            if let Some(answer) = cached(&state) {
                return Ok(answer);
            }
            if state.paused(Kind::Describe, now) {
                return Err(state.throttled(Kind::Describe));
            }
            let mut order = state.asking.iter().cloned().collect::<Vec<_>>();
            let spare = (50 - order.len() % 50) % 50;
            let padding = state.padding(spare, now);
            order.extend(padding);
            order
        };
        for chunk in order.chunks(50) {
            let infos = match cloud.describe_instance_information(chunk).await {
                Ok(infos) => infos,
                Err(error) if error.kind == ErrorKind::Throttled => {
                    self.state().pause(Kind::Describe, now);
                    break;
                }
                Err(error) => return Err(error),
            };
            let mut by_id: HashMap<String, InstanceInformation> = infos
                .into_iter()
                .map(|info| (info.instance_id.clone(), info))
                .collect();
            let mut state = self.state();
            for id in chunk {
                // Only instances still watched: one unwatched meanwhile is done with.
                state.asking.remove(id);
                if state.watched.contains(id) {
                    let info = by_id.remove(id);
                    state.described.insert(id.clone(), (now, info));
                }
            }
        }
        let state = self.state();
        match cached(&state) {
            Some(answer) => Ok(answer),
            None => Err(state.throttled(Kind::Describe)),
        }
    }

    /// Stops watching an instance (it is online, or its workflow ended).
    pub fn unwatch(&self, instance_id: &str) {
        let mut state = self.state();
        state.asking.remove(instance_id);
        state.watched.remove(instance_id);
        state.described.remove(instance_id);
    }
}
