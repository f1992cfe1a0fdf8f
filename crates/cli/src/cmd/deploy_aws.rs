//! The deploy itself, on CloudFormation and S3 (the `aws` feature).
//!
//! Flow ("Updating stacks using change sets", CloudFormation User Guide): package → artifacts
//! bucket (created encrypted with public access blocked when missing) → template inline when
//! it fits 51,200 bytes, else uploaded and passed by URL → no-op check (the stack already has
//! this template and these parameters) → change set (CREATE or UPDATE) → show it → confirm →
//! execute → stream events until the stack settles → outputs, or the first failure's reason.

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use aws_sdk_cloudformation::Client as CloudFormation;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, Stack, StackStatus, Tag,
};
use aws_sdk_s3::Client as S3;

use super::*;
use clock::Clock as _;

struct Clients {
    cfn: CloudFormation,
    s3: S3,
    sts: aws_sdk_sts::Client,
    region: String,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn connect(connection: &Connection, region: Option<&str>) -> Clients {
    let mut config = cloud::aws::AwsConfig::default();
    config.profile = connection.profile.clone();
    config.region = connection.region.clone().or(region.map(str::to_owned));
    config.endpoint_url = connection.endpoint_url.clone();
    let sdk = config.load().await;
    // A local endpoint serves every bucket under one host: path-style addressing.
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(connection.endpoint_url.is_some())
        .build();
    Clients {
        cfn: CloudFormation::new(&sdk),
        s3: S3::from_conf(s3_config),
        sts: aws_sdk_sts::Client::new(&sdk),
        region: sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into()),
    }
}

/// The SDK error with its code and message, not just "service error".
fn sdk_error<E: std::error::Error + 'static>(
    what: &str,
) -> impl FnOnce(aws_sdk_cloudformation::error::SdkError<E>) -> anyhow::Error {
    let what = what.to_owned();
    move |error| {
        let detail = match &error {
            aws_sdk_cloudformation::error::SdkError::ServiceError(service) => {
                format!(
                    "{}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(service.err())
                )
            }
            other => format!(
                "{}",
                aws_sdk_cloudformation::error::DisplayErrorContext(other)
            ),
        };
        anyhow::anyhow!("{what}: {detail}")
    }
}

async fn describe(cfn: &CloudFormation, stack: &str) -> anyhow::Result<Option<Stack>> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(output) => Ok(output.stacks().first().cloned()),
        Err(error) => {
            let text = format!(
                "{}",
                aws_sdk_cloudformation::error::DisplayErrorContext(&error)
            );
            if text.contains("does not exist") {
                Ok(None)
            } else {
                Err(anyhow::anyhow!("DescribeStacks {stack}: {text}"))
            }
        }
    }
}

/// An S3 error with its code and message.
fn s3_error<E, R>(
    what: &'static str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| {
        anyhow::anyhow!(
            "{what} (artifacts bucket): {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )
    }
}

async fn ensure_bucket(clients: &Clients, options: &StackOptions) -> anyhow::Result<String> {
    let bucket = match &options.artifacts_bucket {
        Some(bucket) => bucket.clone(),
        None => {
            let identity = clients
                .sts
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "GetCallerIdentity (to name the artifacts bucket): {}",
                        aws_sdk_sts::error::DisplayErrorContext(&e)
                    )
                })?;
            format!(
                "fleetprep-artifacts-{}-{}",
                identity.account().unwrap_or("account"),
                clients.region
            )
        }
    };
    if clients
        .s3
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .is_ok()
    {
        return Ok(bucket);
    }
    eprintln!("creating the artifacts bucket {bucket} (encrypted, public access blocked)");
    let mut create = clients.s3.create_bucket().bucket(&bucket);
    if clients.region != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(clients.region.as_str().into())
                .build(),
        );
    }
    create.send().await.map_err(s3_error("CreateBucket"))?;
    clients
        .s3
        .put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(
            aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(s3_error("PutPublicAccessBlock"))?;
    clients
        .s3
        .put_bucket_encryption()
        .bucket(&bucket)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(
                    aws_sdk_s3::types::ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::Aes256)
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .send()
        .await
        .map_err(s3_error("PutBucketEncryption"))?;
    Ok(bucket)
}

/// Uploads `body` at `key` unless an object is already there (keys are content hashes).
async fn upload(clients: &Clients, bucket: &str, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
    if clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "PutObject s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}

/// The object's virtual-hosted URL, the form CloudFormation's `TemplateURL` takes. Local
/// endpoints (moto, LocalStack) resolve it from their own S3 too.
fn object_url(clients: &Clients, bucket: &str, key: &str) -> String {
    format!("https://{bucket}.s3.{}.amazonaws.com/{key}", clients.region)
}

fn hash_key(prefix: &str, body: &[u8], suffix: &str) -> String {
    let key = deploy::package::package_key(body);
    let hash = key
        .trim_start_matches("fleetprep/lambda/bootstrap-")
        .trim_end_matches(".zip");
    format!("{prefix}{hash}{suffix}")
}

fn is_finished(status: &StackStatus) -> bool {
    let text = status.as_str();
    text.ends_with("_COMPLETE") && !text.ends_with("CLEANUP_COMPLETE") || text.ends_with("_FAILED")
}

fn is_success(status: &StackStatus) -> bool {
    matches!(
        status,
        StackStatus::CreateComplete | StackStatus::UpdateComplete | StackStatus::DeleteComplete
    )
}

/// Polls stack events until the stack settles; prints each new event with a progress count.
/// Returns the final stack (None once deleted) and the first failure's reason.
async fn follow(
    cfn: &CloudFormation,
    stack: &str,
    since: aws_sdk_cloudformation::primitives::DateTime,
    resources: usize,
) -> anyhow::Result<(Option<Stack>, Option<String>)> {
    let mut seen = HashSet::new();
    let mut done = HashSet::new();
    let mut first_failure = None;
    // Polling a remote service runs on wall-clock time by nature; the interval is the only
    // timer here and it never feeds workflow logic.
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        ticker.tick().await;
        let events = cfn
            .describe_stack_events()
            .stack_name(stack)
            .send()
            .await
            .map(|o| o.stack_events().to_vec())
            .unwrap_or_default();
        let mut fresh: Vec<_> = events
            .into_iter()
            .filter(|e| e.timestamp().is_some_and(|t| *t >= since))
            .filter(|e| seen.insert(e.event_id().unwrap_or_default().to_owned()))
            .collect();
        fresh.reverse(); // DescribeStackEvents lists newest first
        for event in fresh {
            let status = event
                .resource_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            let logical = event.logical_resource_id().unwrap_or_default().to_owned();
            if status.ends_with("_COMPLETE") && logical != stack {
                done.insert(logical.clone());
            }
            let reason = event.resource_status_reason().unwrap_or_default();
            if status.ends_with("_FAILED") && first_failure.is_none() && !reason.is_empty() {
                first_failure = Some(format!("{logical}: {reason}"));
            }
            eprintln!(
                "[{:>3}/{resources}] {status:<22} {logical:<40} {}",
                done.len().min(resources),
                event.resource_type().unwrap_or_default(),
            );
        }
        match describe(cfn, stack).await? {
            None => return Ok((None, first_failure)),
            Some(current) => {
                if let Some(status) = current.stack_status()
                    && is_finished(status)
                {
                    return Ok((Some(current), first_failure));
                }
            }
        }
    }
}

fn print_outputs(stack: &Stack) {
    for output in stack.outputs() {
        println!(
            "{} = {}",
            output.output_key().unwrap_or_default(),
            output.output_value().unwrap_or_default()
        );
    }
}

/// Whether the stack already runs this template with these parameters.
async fn unchanged(
    cfn: &CloudFormation,
    stack: &Stack,
    template: &serde_json::Value,
    parameters: &[(&'static str, String)],
) -> anyhow::Result<bool> {
    let current: BTreeMap<&str, &str> = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or_default(),
                p.parameter_value().unwrap_or_default(),
            )
        })
        .collect();
    let wanted: BTreeMap<&str, &str> = parameters.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if current != wanted {
        return Ok(false);
    }
    let body = cfn
        .get_template()
        .stack_name(stack.stack_name().unwrap_or_default())
        .send()
        .await
        .map_err(sdk_error("GetTemplate"))?
        .template_body
        .unwrap_or_default();
    let deployed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    Ok(&deployed == template)
}

fn confirm(yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the change set needs a confirmation and standard input is not a terminal; pass \
             --yes to execute it without asking"
        );
    }
    eprint!("Execute this change set? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub(super) fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let options = &config.deploy;
    let stack = stack_name(args.stack.as_deref(), options)?;
    let template = template(&config)?;
    let zip = match &args.package {
        Some(path) => {
            let zip = std::fs::read(path)
                .with_context(|| format!("cannot read the package {}", path.display()))?;
            deploy::package::check_package(&path.display().to_string(), &zip, options.arch)?;
            zip
        }
        None => package_bootstrap(&default_bootstrap(), options.arch)?,
    };
    runtime()?.block_on(async {
        let clients = connect(&args.connection, options.region.as_deref()).await;
        let bucket = ensure_bucket(&clients, options).await?;
        let code_key = deploy::package::package_key(&zip);
        upload(&clients, &bucket, &code_key, zip).await?;
        let parameters = parameters(&config, &bucket, &code_key).pairs();
        let existing = describe(&clients.cfn, &stack).await?;
        let change_type = match &existing {
            None => ChangeSetType::Create,
            Some(current) => {
                let status = current
                    .stack_status()
                    .cloned()
                    .unwrap_or(StackStatus::CreateComplete);
                if status == StackStatus::ReviewInProgress {
                    ChangeSetType::Create
                } else if status == StackStatus::RollbackComplete {
                    anyhow::bail!(
                        "stack {stack} is ROLLBACK_COMPLETE (its creation failed); delete it \
                         with `fleetprep deploy delete --stack {stack}` and deploy again"
                    );
                } else if !is_finished(&status) {
                    anyhow::bail!(
                        "stack {stack} is {} — wait until it settles",
                        status.as_str()
                    );
                } else {
                    if unchanged(&clients.cfn, current, &template.body, &parameters).await? {
                        println!("stack {stack} is up to date: no changes to deploy");
                        print_outputs(current);
                        return Ok(ExitCode::SUCCESS);
                    }
                    ChangeSetType::Update
                }
            }
        };
        let body = template.to_json_compact();
        // Named after what it deploys: the template and the parameter values.
        let fingerprint = format!("{body}{parameters:?}");
        let change_set_name = format!("fleetprep-{}", hash_key("", fingerprint.as_bytes(), ""));
        let mut request = clients
            .cfn
            .create_change_set()
            .stack_name(&stack)
            .change_set_name(&change_set_name)
            .change_set_type(change_type.clone())
            .capabilities(Capability::CapabilityNamedIam)
            .description("fleetprep deploy");
        if body.len() <= deploy::template::INLINE_TEMPLATE_LIMIT {
            request = request.template_body(body);
        } else {
            let key = hash_key(
                &format!("fleetprep/templates/{stack}-"),
                body.as_bytes(),
                ".json",
            );
            upload(&clients, &bucket, &key, body.into_bytes()).await?;
            request = request.template_url(object_url(&clients, &bucket, &key));
        }
        for (key, value) in &parameters {
            request = request.parameters(
                Parameter::builder()
                    .parameter_key(*key)
                    .parameter_value(value)
                    .build(),
            );
        }
        for (key, value) in &options.tags {
            request = request.tags(Tag::builder().key(key).value(value).build());
        }
        request.send().await.map_err(sdk_error("CreateChangeSet"))?;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let change_set = loop {
            ticker.tick().await;
            let described = clients
                .cfn
                .describe_change_set()
                .stack_name(&stack)
                .change_set_name(&change_set_name)
                .send()
                .await
                .map_err(sdk_error("DescribeChangeSet"))?;
            match described.status() {
                Some(ChangeSetStatus::CreateComplete) => break described,
                Some(ChangeSetStatus::Failed) => {
                    let reason = described.status_reason().unwrap_or_default().to_owned();
                    let _ = clients
                        .cfn
                        .delete_change_set()
                        .stack_name(&stack)
                        .change_set_name(&change_set_name)
                        .send()
                        .await;
                    if reason.contains("didn't contain changes") || reason.contains("No updates") {
                        println!("stack {stack} is up to date: no changes to deploy");
                        return Ok(ExitCode::SUCCESS);
                    }
                    anyhow::bail!("change set for {stack} failed: {reason}");
                }
                _ => {}
            }
        };
        println!(
            "change set {change_set_name} ({} {stack}):",
            change_type.as_str().to_lowercase()
        );
        for change in change_set.changes() {
            if let Some(resource) = change.resource_change() {
                println!(
                    "  {:<8} {:<40} {:<36}{}",
                    resource.action().map(|a| a.as_str()).unwrap_or_default(),
                    resource.logical_resource_id().unwrap_or_default(),
                    resource.resource_type().unwrap_or_default(),
                    match resource.replacement().map(|r| r.as_str()) {
                        Some("True") => "  (replacement)",
                        Some("Conditional") => "  (may replace)",
                        _ => "",
                    }
                );
            }
        }
        if !confirm(args.yes)? {
            let _ = clients
                .cfn
                .delete_change_set()
                .stack_name(&stack)
                .change_set_name(&change_set_name)
                .send()
                .await;
            println!("not executed; the change set was deleted");
            return Ok(ExitCode::from(1));
        }
        let since = aws_sdk_cloudformation::primitives::DateTime::from(
            // The events of this deploy: everything after the change set was executed.
            clock::SystemClock.now() - Duration::from_secs(5),
        );
        clients
            .cfn
            .execute_change_set()
            .stack_name(&stack)
            .change_set_name(&change_set_name)
            .send()
            .await
            .map_err(sdk_error("ExecuteChangeSet"))?;
        let resources = template.body["Resources"]
            .as_object()
            .map_or(0, |r| r.len());
        let (settled, failure) = follow(&clients.cfn, &stack, since, resources).await?;
        let settled =
            settled.ok_or_else(|| anyhow::anyhow!("stack {stack} disappeared while deploying"))?;
        let status = settled
            .stack_status()
            .cloned()
            .unwrap_or(StackStatus::UpdateFailed);
        if is_success(&status) {
            println!("stack {stack}: {}", status.as_str());
            print_outputs(&settled);
            Ok(ExitCode::SUCCESS)
        } else {
            anyhow::bail!(
                "stack {stack} ended {}: {}",
                status.as_str(),
                failure.unwrap_or_else(|| settled
                    .stack_status_reason()
                    .unwrap_or("no reason given")
                    .to_owned())
            )
        }
    })
}

pub(super) fn delete(args: StackArgs) -> anyhow::Result<ExitCode> {
    let (stack, connection) = args.resolve()?;
    runtime()?.block_on(async {
        let clients = connect(&connection, None).await;
        let Some(current) = describe(&clients.cfn, &stack).await? else {
            println!("stack {} does not exist", stack);
            return Ok(ExitCode::SUCCESS);
        };
        // The table's name from the stack's resources (outputs are missing from a stack whose
        // creation failed half-way).
        let table = clients
            .cfn
            .describe_stack_resource()
            .stack_name(&stack)
            .logical_resource_id("HostnameTable")
            .send()
            .await
            .ok()
            .and_then(|o| o.stack_resource_detail)
            .and_then(|d| d.physical_resource_id);
        let since = aws_sdk_cloudformation::primitives::DateTime::from(
            clock::SystemClock.now() - Duration::from_secs(5),
        );
        clients
            .cfn
            .delete_stack()
            .stack_name(&stack)
            .send()
            .await
            .map_err(sdk_error("DeleteStack"))?;
        let (settled, failure) =
            follow(&clients.cfn, &stack, since, current.outputs().len()).await?;
        if let Some(settled) = settled
            && settled.stack_status() != Some(&StackStatus::DeleteComplete)
        {
            anyhow::bail!(
                "stack {} ended {}: {}",
                stack,
                settled.stack_status().map(|s| s.as_str()).unwrap_or("?"),
                failure.unwrap_or_default()
            );
        }
        println!("stack {} deleted", stack);
        if let Some(table) = table {
            println!(
                "the hostname table {table} is kept (DeletionPolicy Retain, deletion protection \
                 on); delete it yourself when no fleet needs its names"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn status(args: StackArgs) -> anyhow::Result<ExitCode> {
    let (stack, connection) = args.resolve()?;
    runtime()?.block_on(async {
        let clients = connect(&connection, None).await;
        let Some(current) = describe(&clients.cfn, &stack).await? else {
            anyhow::bail!(
                "stack {} does not exist (deploy it with fleetprep deploy)",
                stack
            );
        };
        println!(
            "stack {}: {}{}",
            stack,
            current.stack_status().map(|s| s.as_str()).unwrap_or("?"),
            current
                .stack_status_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        print_outputs(&current);
        Ok(ExitCode::SUCCESS)
    })
}

/// The state machine ARN of `workflow` from a stack's outputs (`--engine aws --stack NAME`).
pub async fn state_machine_arn(
    connection: &Connection,
    stack: &str,
    workflow: &str,
) -> anyhow::Result<String> {
    let clients = connect(connection, None).await;
    let current = describe(&clients.cfn, stack)
        .await
        .with_context(|| {
            format!(
                "finding the state machines of stack {stack} (--stack, or [deploy] stack in \
                 the config); an endpoint without CloudFormation, such as `fleetprep serve`, \
                 needs --state-machine-prefix instead"
            )
        })?
        .ok_or_else(|| {
            anyhow::anyhow!("stack {stack} does not exist; deploy it with fleetprep deploy")
        })?;
    let key = deploy::Template::state_machine_output(workflow);
    current
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(key.as_str()))
        .and_then(|o| o.output_value())
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow::anyhow!("stack {stack} has no output {key}; is it a fleetprep stack?")
        })
}
