//! Hostname leases on DynamoDB: [`names::NamePool`] with the SQLite store's semantics.
//!
//! One table, key `pk` (the pool's namespace) + `sk`, two items per lease:
//!
//! - `sk = "name#<key>"` (the case-folded name, [`sysprep::hostname::key`]): who holds the
//!   name. Its conditional put is what makes names unique.
//! - `sk = "instance#<instance id>"`: which name an instance holds. Its conditional put is what
//!   makes allocation idempotent per instance id, even when two retries race.
//!
//! Both are written by conditional PutItems, each with the condition "absent, or an
//! unconfirmed lease past its expiry": the name item first (if that fails the name is taken),
//! then the instance item (if that fails a concurrent retry for the same instance won, and the
//! name item is deleted again). A crash between the two leaves a leased name item with no
//! instance, which expires like any abandoned lease. (A TransactWriteItems would make the pair
//! atomic but costs twice the write capacity and the local test endpoint cannot run
//! concurrent transactions.) Expiry is `expires_at_ms`, checked in the conditions, so correctness never waits
//! for DynamoDB's TTL; `ttl` (epoch seconds, the table's TTL attribute) only lets DynamoDB
//! delete abandoned leases eventually. Confirmation removes both, so confirmed leases live
//! until released. Release deletes the instance item, then the name item on the condition
//! that this instance still holds it.
//!
//! Candidates come from [`sysprep::hostname::HostnamePolicy`]. For `{seq:N}` patterns a
//! counter item (`sk = "meta#next"`, an atomic `ADD`) gives each allocator its own sequence,
//! so a thousand concurrent launches do not race for one name; a release moves the counter
//! back to the freed sequence. When the counter runs past the end, the pool is read once and
//! only the free sequences are tried, lowest first; an empty free list proves exhaustion.
//! Unlike SQLite it promises *a* free name, not always the lowest (see `names`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use clock::Clock;
use names::{AllocationRequest, Lease, LeaseState, NamePool, PoolError, PoolOptions};
use sysprep::hostname::{CandidateSpace, Hostname, HostnamePolicy, NameContext};

use super::error::from_sdk;
use crate::{CloudError, ErrorKind};

/// Sequences taken from the pool's counter before reading the whole pool.
const COUNTER_TRIES: u32 = 8;

/// The sort key of the pool's sequence counter item.
const COUNTER_KEY: &str = "meta#next";

/// The table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = crate::HOSTNAME_TTL_ATTRIBUTE;

/// A DynamoDB table that holds hostname leases for any number of pools.
#[derive(Clone, Debug)]
pub struct DynamoHostnames {
    client: Client,
    table: String,
}

impl DynamoHostnames {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A [`NamePool`] over one pool (namespace) of this table.
    pub fn pool(
        &self,
        namespace: impl Into<String>,
        policy: HostnamePolicy,
        clock: Arc<dyn Clock>,
        options: PoolOptions,
    ) -> DynamoNamePool {
        DynamoNamePool {
            client: self.client.clone(),
            table: self.table.clone(),
            namespace: namespace.into(),
            policy,
            clock,
            options,
        }
    }

    /// Creates the table (on-demand capacity, key `pk`+`sk`) and turns on TTL. The deploy
    /// template does this in production; tests and local setups call it.
    pub async fn create_table(&self) -> Result<(), CloudError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            CloudError::invalid_parameter("ConstructionFailure", e.to_string())
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build)
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| from_sdk("dynamodb:CreateTable", e))?;
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(build)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| from_sdk("dynamodb:UpdateTimeToLive", e))?;
        Ok(())
    }
}

/// One pool of hostname leases in a DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoNamePool {
    client: Client,
    table: String,
    namespace: String,
    policy: HostnamePolicy,
    clock: Arc<dyn Clock>,
    options: PoolOptions,
}

/// How an allocation went: the lease and how many conditional writes lost a race first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub lease: Lease,
    pub conflicts: u32,
}

enum Claim {
    Won(Lease),
    NameTaken,
    InstanceHasLease,
}

impl DynamoNamePool {
    pub fn policy(&self) -> &HostnamePolicy {
        &self.policy
    }

    /// [`NamePool::allocate`], also reporting lost races (for metrics).
    pub async fn allocate_counting(
        &self,
        request: &AllocationRequest,
    ) -> Result<Allocation, PoolError> {
        let context = NameContext {
            instance_id: &request.instance_id,
            availability_zone: request.availability_zone.as_deref(),
        };
        // Validate the request before touching the store: a bad zone is an answer.
        self.policy.check_context(&context)?;

        let now = self.clock.now();
        if let Some(existing) = self.read(&instance_key(&request.instance_id)).await?
            && existing.is_live(now)
        {
            return Ok(Allocation {
                lease: existing,
                conflicts: 0,
            });
        }
        let mut conflicts = 0u32;
        match self.policy.candidate_space() {
            CandidateSpace::Sequence { first, last } => {
                // Fast path: the pool's counter hands each allocator its own sequence, so a
                // thousand concurrent launches do not race for the same name.
                for _ in 0..COUNTER_TRIES {
                    let sequence = self.next_sequence(first).await?;
                    if sequence > last {
                        break;
                    }
                    if let Some(lease) = self
                        .try_sequence(request, &context, sequence, now, &mut conflicts)
                        .await?
                    {
                        return Ok(Allocation { lease, conflicts });
                    }
                }
                // Slow path: the counter ran past the end (or kept hitting held names). Read
                // the pool once and try the free sequences, lowest first, each allocator
                // starting at its own small offset so concurrent ones spread out.
                let taken: HashSet<u64> = self
                    .live_leases(now)
                    .await?
                    .into_iter()
                    .map(|l| l.sequence)
                    .collect();
                let mut free: Vec<u64> = (first..=last).filter(|s| !taken.contains(s)).collect();
                if !free.is_empty() {
                    let offset =
                        (fnv1a(request.instance_id.as_bytes()) as usize) % free.len().min(16);
                    free.rotate_left(offset);
                }
                for sequence in free {
                    if let Some(lease) = self
                        .try_sequence(request, &context, sequence, now, &mut conflicts)
                        .await?
                    {
                        return Ok(Allocation { lease, conflicts });
                    }
                }
            }
            CandidateSpace::Hash { attempts } => {
                for attempt in 0..attempts {
                    if let Some(lease) = self
                        .try_sequence(request, &context, attempt, now, &mut conflicts)
                        .await?
                    {
                        return Ok(Allocation { lease, conflicts });
                    }
                }
            }
        }
        Err(PoolError::Exhausted {
            pattern: self.policy.pattern().to_owned(),
            capacity: self.policy.capacity(),
        })
    }

    /// The next sequence from the pool's counter (an atomic `ADD`): `first` for a new pool.
    async fn next_sequence(&self, first: u64) -> Result<u64, PoolError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.namespace.clone()))
            .key("sk", AttributeValue::S(COUNTER_KEY.to_owned()))
            .update_expression("ADD #next :one")
            .expression_attribute_names("#next", "next")
            .expression_attribute_values(":one", number(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| store_error(from_sdk("dynamodb:UpdateItem", e)))?;
        let issued = output
            .attributes()
            .and_then(|a| a.get("next"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| PoolError::Unavailable {
                message: format!(
                    "pool {:?}: the sequence counter returned no number",
                    self.namespace
                ),
            })?;
        Ok(first + issued.saturating_sub(1))
    }

    /// After a release, moves the counter back so the freed sequence is handed out next
    /// (like the SQLite store's hint). Losing this race only costs a slow-path read later.
    async fn lower_counter(&self, sequence: u64) -> Result<(), PoolError> {
        let CandidateSpace::Sequence { first, .. } = self.policy.candidate_space() else {
            return Ok(());
        };
        let value = sequence.saturating_sub(first);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.namespace.clone()))
            .key("sk", AttributeValue::S(COUNTER_KEY.to_owned()))
            .update_expression("SET #next = :value")
            .condition_expression("#next > :value")
            .expression_attribute_names("#next", "next")
            .expression_attribute_values(":value", number(value))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                let mapped = from_sdk("dynamodb:UpdateItem", error);
                if mapped.kind == ErrorKind::Conflict {
                    Ok(())
                } else {
                    Err(store_error(mapped))
                }
            }
        }
    }

    async fn try_sequence(
        &self,
        request: &AllocationRequest,
        context: &NameContext<'_>,
        sequence: u64,
        now: SystemTime,
        conflicts: &mut u32,
    ) -> Result<Option<Lease>, PoolError> {
        let name = self.policy.candidate(sequence, context)?;
        let lease = Lease {
            name,
            instance_id: request.instance_id.clone(),
            sequence,
            state: LeaseState::Leased,
            allocated_at: truncate_millis(now),
            expires_at: Some(truncate_millis(now + self.options.lease_ttl)),
        };
        match self.claim(lease, now).await? {
            Claim::Won(lease) => Ok(Some(lease)),
            Claim::NameTaken => {
                *conflicts += 1;
                Ok(None)
            }
            Claim::InstanceHasLease => {
                // A concurrent retry for the same instance won: its lease is the answer.
                match self.read(&instance_key(&request.instance_id)).await? {
                    Some(existing) if existing.is_live(now) => Ok(Some(existing)),
                    _ => Err(PoolError::Unavailable {
                        message: format!(
                            "pool {:?}: a concurrent allocation for {} won and its lease \
                             vanished before it could be read (released at the same time); \
                             retry the allocation",
                            self.namespace, request.instance_id
                        ),
                    }),
                }
            }
        }
    }

    async fn claim(&self, lease: Lease, now: SystemTime) -> Result<Claim, PoolError> {
        // 1. The name item: its conditional put is the uniqueness guarantee.
        if !self
            .put_if_free(&name_key(&lease.name), &lease, now)
            .await?
        {
            return Ok(Claim::NameTaken);
        }
        // 2. The instance item: its conditional put is the idempotency guarantee.
        if self
            .put_if_free(&instance_key(&lease.instance_id), &lease, now)
            .await?
        {
            return Ok(Claim::Won(lease));
        }
        // A concurrent allocation for the same instance won: give our name back (only if it
        // is still the one we just wrote) and answer with theirs.
        let rollback = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.namespace.clone()))
            .key("sk", AttributeValue::S(name_key(&lease.name)))
            .condition_expression("instance_id = :instance AND allocated_at_ms = :allocated")
            .expression_attribute_values(":instance", AttributeValue::S(lease.instance_id.clone()))
            .expression_attribute_values(":allocated", number(to_millis(lease.allocated_at)))
            .send()
            .await;
        if let Err(error) = rollback {
            let mapped = from_sdk("dynamodb:DeleteItem", error);
            if mapped.kind != ErrorKind::Conflict {
                return Err(store_error(mapped));
            }
        }
        Ok(Claim::InstanceHasLease)
    }

    /// Conditional PutItem of one lease item: true if written, false if the item is held by
    /// a live lease.
    async fn put_if_free(
        &self,
        sk: &str,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<bool, PoolError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .condition_expression(
                "attribute_not_exists(sk) OR (attribute_exists(expires_at_ms) AND \
                 expires_at_ms <= :now)",
            )
            .expression_attribute_values(":now", number(to_millis(now)));
        for (key, value) in self.item(sk, lease) {
            request = request.item(key, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                let mapped = from_sdk("dynamodb:PutItem", error);
                if mapped.kind == ErrorKind::Conflict {
                    Ok(false)
                } else {
                    Err(store_error(mapped))
                }
            }
        }
    }

    fn item(&self, sk: &str, lease: &Lease) -> Vec<(&'static str, AttributeValue)> {
        let mut item = vec![
            ("pk", AttributeValue::S(self.namespace.clone())),
            ("sk", AttributeValue::S(sk.to_owned())),
            ("name", AttributeValue::S(lease.name.as_str().to_owned())),
            ("instance_id", AttributeValue::S(lease.instance_id.clone())),
            ("sequence", number(lease.sequence)),
            ("state", AttributeValue::S("leased".to_owned())),
            ("allocated_at_ms", number(to_millis(lease.allocated_at))),
        ];
        if let Some(expires_at) = lease.expires_at {
            item.push(("expires_at_ms", number(to_millis(expires_at))));
            // TTL is whole seconds; round up so DynamoDB never deletes a live lease.
            item.push((TTL_ATTRIBUTE, number(to_millis(expires_at).div_ceil(1000))));
        }
        item
    }

    async fn read(&self, sk: &str) -> Result<Option<Lease>, PoolError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.namespace.clone()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(from_sdk("dynamodb:GetItem", e)))?;
        match output.item() {
            Some(item) => parse_lease(item).map(Some),
            None => Ok(None),
        }
    }

    async fn live_leases(&self, now: SystemTime) -> Result<Vec<Lease>, PoolError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(self.namespace.clone()))
            .expression_attribute_values(":prefix", AttributeValue::S("name#".to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| store_error(from_sdk("dynamodb:Query", e)))?;
        let mut leases = Vec::with_capacity(items.len());
        for item in &items {
            let lease = parse_lease(item)?;
            if lease.is_live(now) {
                leases.push(lease);
            }
        }
        leases.sort_by_key(|l| l.name.key());
        Ok(leases)
    }

    /// The conditional UpdateItem that confirms one of a lease's two items: only while it is
    /// still this instance's unexpired lease.
    fn confirm_item(
        &self,
        sk: String,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<ConfirmUpdate, PoolError> {
        Ok(ConfirmUpdate {
            table: self.table.clone(),
            pk: self.namespace.clone(),
            sk,
            instance_id: lease.instance_id.clone(),
            now_ms: to_millis(now),
        })
    }
}

#[async_trait::async_trait]
impl NamePool for DynamoNamePool {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Lease, PoolError> {
        self.allocate_counting(request).await.map(|a| a.lease)
    }

    async fn confirm(&self, instance_id: &str) -> Result<Lease, PoolError> {
        let now = self.clock.now();
        let not_found = || PoolError::NotFound {
            instance_id: instance_id.to_owned(),
        };
        let lease = match self.read(&instance_key(instance_id)).await? {
            Some(lease) if lease.is_live(now) => lease,
            _ => return Err(not_found()),
        };
        if lease.state == LeaseState::Confirmed {
            return Ok(lease);
        }
        // Instance item first: its condition (still this lease, not expired) decides; the
        // name item follows with the same condition. Two UpdateItem calls rather than a
        // transaction keep the IAM surface to dynamodb:UpdateItem, and a crash in between
        // leaves a confirmed instance whose name item merely expires later than it should
        // have — confirm again (it is idempotent) repairs it.
        let first = self
            .confirm_item(instance_key(instance_id), &lease, now)?
            .send_with(&self.client)
            .await;
        if let Err(error) = first {
            let mapped = from_sdk("dynamodb:UpdateItem", error);
            if mapped.kind != ErrorKind::Conflict {
                return Err(store_error(mapped));
            }
            // Lost a race: a concurrent confirm (fine) or expiry/release (not found).
            return match self.read(&instance_key(instance_id)).await? {
                Some(current)
                    if current.state == LeaseState::Confirmed && current.name == lease.name =>
                {
                    Ok(current)
                }
                _ => Err(not_found()),
            };
        }
        self.confirm_item(name_key(&lease.name), &lease, now)?
            .send_with(&self.client)
            .await
            .map_err(|e| store_error(from_sdk("dynamodb:UpdateItem", e)))?;
        Ok(Lease {
            state: LeaseState::Confirmed,
            expires_at: None,
            ..lease
        })
    }

    async fn release(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        let now = self.clock.now();
        let Some(lease) = self.read(&instance_key(instance_id)).await? else {
            return Ok(None);
        };
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.namespace.clone()))
            .key("sk", AttributeValue::S(instance_key(instance_id)))
            .condition_expression("attribute_exists(sk)")
            .send()
            .await;
        if let Err(error) = deleted {
            let mapped = from_sdk("dynamodb:DeleteItem", error);
            if mapped.kind == ErrorKind::Conflict {
                // A concurrent release won; it frees the name.
                return Ok(None);
            }
            return Err(store_error(mapped));
        }
        let name_deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.namespace.clone()))
            .key("sk", AttributeValue::S(name_key(&lease.name)))
            .condition_expression("instance_id = :instance")
            .expression_attribute_values(":instance", AttributeValue::S(instance_id.to_owned()))
            .send()
            .await;
        if let Err(error) = name_deleted {
            let mapped = from_sdk("dynamodb:DeleteItem", error);
            // Conflict: the name had expired and another instance holds it now.
            if mapped.kind != ErrorKind::Conflict {
                return Err(store_error(mapped));
            }
        }
        self.lower_counter(lease.sequence).await?;
        // An expired lease was already free: report nothing released, like SQLite.
        Ok(lease.is_live(now).then_some(lease))
    }

    async fn get_by_instance(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        let now = self.clock.now();
        Ok(self
            .read(&instance_key(instance_id))
            .await?
            .filter(|l| l.is_live(now)))
    }

    async fn get_by_name(&self, name: &str) -> Result<Option<Lease>, PoolError> {
        let now = self.clock.now();
        let sk = format!("name#{}", sysprep::hostname::key(name));
        Ok(self.read(&sk).await?.filter(|l| l.is_live(now)))
    }

    async fn list(&self) -> Result<Vec<Lease>, PoolError> {
        self.live_leases(self.clock.now()).await
    }
}

/// One confirm write (see [`DynamoNamePool::confirm_item`]).
struct ConfirmUpdate {
    table: String,
    pk: String,
    sk: String,
    instance_id: String,
    now_ms: u64,
}

impl ConfirmUpdate {
    async fn send_with(
        self,
        client: &Client,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            aws_smithy_runtime_api::http::Response,
        >,
    > {
        client
            .update_item()
            .table_name(self.table)
            .key("pk", AttributeValue::S(self.pk))
            .key("sk", AttributeValue::S(self.sk))
            .update_expression("SET #state = :confirmed REMOVE expires_at_ms, #ttl")
            .condition_expression("instance_id = :instance AND expires_at_ms > :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":confirmed", AttributeValue::S("confirmed".into()))
            .expression_attribute_values(":instance", AttributeValue::S(self.instance_id))
            .expression_attribute_values(":now", number(self.now_ms))
            .send()
            .await
    }
}

/// A store failure as the pool's error: every store failure is worth a retry to the caller,
/// and the message keeps the AWS code.
fn store_error(error: CloudError) -> PoolError {
    PoolError::Unavailable {
        message: error.to_string(),
    }
}

/// The Cloud-level error for a pool error (the names the workflows catch).
pub fn cloud_error(error: PoolError) -> CloudError {
    let name = error.error_name();
    match &error {
        PoolError::Exhausted { .. } => CloudError::limit_exceeded(name, error.to_string()),
        PoolError::NotFound { .. } => CloudError::not_found(name, error.to_string()),
        PoolError::InvalidRequest(_) => CloudError::invalid_parameter(name, error.to_string()),
        PoolError::Unavailable { .. } => CloudError::unavailable(name, error.to_string()),
    }
}

fn parse_lease(item: &HashMap<String, AttributeValue>) -> Result<Lease, PoolError> {
    let corrupt = |field: &str| PoolError::Unavailable {
        message: format!(
            "lease item {:?} has no valid {field:?}; the table holds data fleetprep did not \
             write",
            item.get("sk").and_then(|v| v.as_s().ok())
        ),
    };
    let text = |key: &str| {
        item.get(key)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    let num = |key: &str| {
        item.get(key)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let name = text("name")
        .and_then(|n| Hostname::parse(n).ok())
        .ok_or_else(|| corrupt("name"))?;
    let state = match text("state") {
        Some("leased") => LeaseState::Leased,
        Some("confirmed") => LeaseState::Confirmed,
        _ => return Err(corrupt("state")),
    };
    Ok(Lease {
        name,
        instance_id: text("instance_id")
            .ok_or_else(|| corrupt("instance_id"))?
            .to_owned(),
        sequence: num("sequence").ok_or_else(|| corrupt("sequence"))?,
        state,
        allocated_at: from_millis(
            num("allocated_at_ms").ok_or_else(|| corrupt("allocated_at_ms"))?,
        ),
        expires_at: num("expires_at_ms").map(from_millis),
    })
}

fn name_key(name: &Hostname) -> String {
    format!("name#{}", name.key())
}

fn instance_key(instance_id: &str) -> String {
    format!("instance#{instance_id}")
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// Leases are stored in milliseconds; returning the stored precision keeps a fresh lease equal
/// to the same lease read back.
fn truncate_millis(time: SystemTime) -> SystemTime {
    from_millis(to_millis(time))
}

/// FNV-1a: a stable hash (unlike std's randomised one) so an instance probes the same names
/// on every retry.
fn fnv1a(bytes: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(bytes);
    fnv.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_to_leases() {
        let lease = Lease {
            name: Hostname::parse("Web-042").unwrap(),
            instance_id: "i-1".into(),
            sequence: 42,
            state: LeaseState::Leased,
            allocated_at: from_millis(1_000),
            expires_at: Some(from_millis(601_500)),
        };
        let item: HashMap<String, AttributeValue> = vec![
            ("name", AttributeValue::S("Web-042".into())),
            ("instance_id", AttributeValue::S("i-1".into())),
            ("sequence", number(42)),
            ("state", AttributeValue::S("leased".into())),
            ("allocated_at_ms", number(1_000)),
            ("expires_at_ms", number(601_500)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(parse_lease(&item).unwrap(), lease);
        assert_eq!(name_key(&lease.name), "name#web-042");
    }

    #[test]
    fn corrupt_items_name_the_field() {
        let item: HashMap<String, AttributeValue> =
            [("sk".to_owned(), AttributeValue::S("name#x".into()))].into();
        let error = parse_lease(&item).unwrap_err();
        assert!(error.to_string().contains("\"name\""), "{error}");
    }

    #[test]
    fn pool_errors_keep_their_names() {
        let error = cloud_error(PoolError::Exhausted {
            pattern: "{prefix}{seq:1}".into(),
            capacity: 9,
        });
        assert_eq!(error.kind, ErrorKind::LimitExceeded);
        assert_eq!(error.code, "NamePoolExhausted");
        assert!(!error.is_retryable());
    }

    #[test]
    fn probing_starts_at_a_stable_hash() {
        assert_eq!(fnv1a(b"i-0123"), fnv1a(b"i-0123"));
        assert_ne!(fnv1a(b"i-0123"), fnv1a(b"i-0124"));
    }
}
