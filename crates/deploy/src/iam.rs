//! The function role's policy: every IAM action a handler may need (declared next to the
//! handlers, `workflows::iam`) with the narrowest resource and condition AWS allows for it.
//!
//! The actions come from the declarations; this module only says *where* each one applies
//! ([`grants`]). An action with no entry here is an error, so a handler that starts calling
//! something new cannot be deployed with a silently broad grant. Sources, by action:
//! - EC2 resource types, `aws:RequestTag`/`aws:ResourceTag`, `ec2:CreateAction`,
//!   `ec2:MetadataHttpTokens`: "Actions, resources, and condition keys for Amazon EC2" (Service
//!   Authorization Reference) and "Grant permission to tag Amazon EC2 resources during
//!   creation" (EC2 User Guide). Describe actions support no resource-level permissions.
//! - `ssm:SendCommand` on the document and on instances by `ssm:resourceTag/...`: "Actions,
//!   resources, and condition keys for AWS Systems Manager"; AWS-owned documents carry no
//!   account in their ARN ("Setting up identity based policies examples", SSM User Guide).
//! - Auto Scaling actions on the group ARN: "Actions, resources, and condition keys for
//!   Amazon EC2 Auto Scaling"; `DescribeInstanceRefreshes` takes no resource.
//! - `iam:PassRole` with `iam:PassedToService` ("Granting a user permissions to pass a role to
//!   an AWS service", IAM User Guide).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The tag fleetprep puts on every builder at launch (`launch_builder`), and its value.
pub const BUILDER_TAG: (&str, &str) = ("fleetprep:role", "builder");
/// The tag fleetprep puts on every image it creates (`create_image`, then `tag_image`).
pub const IMAGE_TAG_KEY: &str = "fleetprep:state";
/// The value of [`IMAGE_TAG_KEY`] at creation.
pub const IMAGE_TAG_AT_CREATION: &str = "baking";
/// The tag Auto Scaling puts on every instance of a group ("Tag Auto Scaling groups and
/// instances", EC2 Auto Scaling User Guide).
pub const GROUP_TAG_KEY: &str = "aws:autoscaling:groupName";
/// The Run Command documents the handlers send: PowerShell, and the Windows Update step of
/// the bake (issue 10) through the document AWS uses for it.
pub const SSM_DOCUMENTS: &[&str] = &["AWS-RunPowerShellScript", "AWS-InstallWindowsUpdates"];

/// Names the template gives the policy for the resources it scopes to.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The hostname table's ARN (`{"Fn::GetAtt": [...]}`).
    pub table_arn: Value,
    /// The builder role's ARN (a `Ref` or `Fn::GetAtt`).
    pub builder_role_arn: Value,
    /// Require IMDSv2 on builders (a condition on RunInstances).
    pub require_imdsv2: bool,
}

/// One statement's worth of scope for some actions.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The policy statement's `Sid`; actions with the same grant share one statement.
    pub sid: &'static str,
    /// The statement's `Resource` ARNs (CloudFormation `Fn::Sub`/`Fn::GetAtt` values, or `"*"`
    /// for actions that support no resource-level permission).
    pub resources: Vec<Value>,
    /// The statement's `Condition` block (e.g. a resource-tag match), if any.
    pub condition: Option<Value>,
}

fn sub(text: &str) -> Value {
    json!({"Fn::Sub": text})
}

fn ec2(resource: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:ec2:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"
    ))
}

/// Images and snapshots are named without an account (public AMIs are readable by anyone).
fn ec2_no_account(resource: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:ec2:${{AWS::Region}}::{resource}"
    ))
}

fn builder_instances() -> Grant {
    Grant {
        sid: "BuilderInstances",
        resources: vec![ec2("instance/*")],
        condition: Some(json!({"StringEquals": {
            format!("aws:ResourceTag/{}", BUILDER_TAG.0): BUILDER_TAG.1
        }})),
    }
}

fn read_only() -> Grant {
    Grant {
        sid: "ReadOnlyNoResourceLevel",
        resources: vec![json!("*")],
        condition: None,
    }
}

/// Where `action` may apply. `Err` for an action this table does not know: add its scope here.
pub fn grants(action: &str, scope: &Scope) -> Result<Vec<Grant>, String> {
    let group_arn = sub(
        "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/${AutoScalingGroupName}",
    );
    let grants = match action {
        // Describe/Get calls that take no resource-level permission at all.
        "ec2:DescribeInstances"
        | "ec2:DescribeImages"
        | "ec2:DescribeLaunchTemplateVersions"
        | "ssm:DescribeInstanceInformation"
        | "ssm:GetCommandInvocation"
        | "ssm:ListCommandInvocations"
        | "ssm:DescribeParameters"
        | "autoscaling:DescribeInstanceRefreshes" => vec![read_only()],
        // Metadata of the secrets the bake checks (never the value): any secret the config
        // names, so no ARN is known when the stack is created.
        "secretsmanager:DescribeSecret" => vec![read_only()],
        "ec2:RunInstances" => {
            let mut created = json!({"StringEquals": {
                format!("aws:RequestTag/{}", BUILDER_TAG.0): BUILDER_TAG.1
            }});
            if scope.require_imdsv2 {
                created["StringEquals"]["ec2:MetadataHttpTokens"] = json!("required");
            }
            vec![
                Grant {
                    sid: "LaunchTaggedBuilders",
                    resources: vec![ec2("instance/*")],
                    condition: Some(created),
                },
                Grant {
                    sid: "LaunchBuilderVolumes",
                    resources: vec![ec2("volume/*")],
                    condition: Some(json!({"StringEquals": {
                        format!("aws:RequestTag/{}", BUILDER_TAG.0): BUILDER_TAG.1
                    }})),
                },
                Grant {
                    sid: "LaunchBuilderInputs",
                    resources: vec![
                        ec2_no_account("image/*"),
                        ec2("subnet/*"),
                        ec2("security-group/*"),
                        ec2("network-interface/*"),
                        ec2("key-pair/*"),
                    ],
                    condition: None,
                },
            ]
        }
        "ec2:CreateTags" => vec![
            Grant {
                sid: "TagOnCreate",
                resources: vec![
                    ec2("instance/*"),
                    ec2("volume/*"),
                    ec2_no_account("image/*"),
                ],
                condition: Some(json!({"StringEquals": {
                    "ec2:CreateAction": ["RunInstances", "CreateImage"]
                }})),
            },
            fleetprep_images(),
            // The `user-data` rename method (`tag_hostname`): only the hostname tag, only on
            // the group's instances (`aws:TagKeys` with `ForAllValues`: "Grant permission to
            // tag Amazon EC2 resources during creation" and the EC2 condition keys).
            Grant {
                sid: "HostnameTagOnGroupInstances",
                resources: vec![ec2("instance/*")],
                condition: Some(json!({
                    "StringEquals": {
                        format!("aws:ResourceTag/{GROUP_TAG_KEY}"): {"Ref": "AutoScalingGroupName"}
                    },
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": [sysprep::userdata::HOSTNAME_TAG]
                    }
                })),
            },
        ],
        "ec2:StopInstances" | "ec2:TerminateInstances" | "ec2:GetConsoleOutput" => {
            vec![builder_instances()]
        }
        "ec2:CreateImage" => vec![
            builder_instances(),
            Grant {
                sid: "CreateTaggedImages",
                resources: vec![ec2_no_account("image/*")],
                condition: Some(json!({"StringEquals": {
                    format!("aws:RequestTag/{IMAGE_TAG_KEY}"): IMAGE_TAG_AT_CREATION
                }})),
            },
            Grant {
                sid: "CreateImageSnapshots",
                resources: vec![ec2_no_account("snapshot/*")],
                condition: None,
            },
        ],
        "ec2:DeregisterImage" => vec![fleetprep_images()],
        "ec2:CreateLaunchTemplateVersion" | "ec2:ModifyLaunchTemplate" => vec![Grant {
            sid: "GroupLaunchTemplate",
            resources: vec![ec2("launch-template/${LaunchTemplateId}")],
            condition: None,
        }],
        "ssm:SendCommand" => vec![
            Grant {
                sid: "RunCommandDocuments",
                resources: SSM_DOCUMENTS
                    .iter()
                    .map(|d| {
                        sub(&format!(
                            "arn:${{AWS::Partition}}:ssm:${{AWS::Region}}::document/{d}"
                        ))
                    })
                    .collect(),
                condition: None,
            },
            Grant {
                sid: "RunCommandOnGroupInstances",
                resources: vec![ec2("instance/*")],
                condition: Some(json!({"StringEquals": {
                    format!("ssm:resourceTag/{GROUP_TAG_KEY}"): {"Ref": "AutoScalingGroupName"}
                }})),
            },
            Grant {
                sid: "RunCommandOnBuilders",
                resources: vec![ec2("instance/*")],
                condition: Some(json!({"StringEquals": {
                    format!("ssm:resourceTag/{}", BUILDER_TAG.0): BUILDER_TAG.1
                }})),
            },
        ],
        "autoscaling:CompleteLifecycleAction"
        | "autoscaling:RecordLifecycleActionHeartbeat"
        | "autoscaling:StartInstanceRefresh" => vec![Grant {
            sid: "GroupLifecycleAndRefresh",
            resources: vec![group_arn],
            condition: None,
        }],
        "iam:PassRole" => vec![Grant {
            sid: "PassBuilderRoleToEc2",
            resources: vec![scope.builder_role_arn.clone()],
            condition: Some(json!({"StringEquals": {
                "iam:PassedToService": "ec2.amazonaws.com"
            }})),
        }],
        dynamodb if dynamodb.starts_with("dynamodb:") => vec![Grant {
            sid: "HostnameLeases",
            resources: vec![scope.table_arn.clone()],
            condition: None,
        }],
        other => {
            return Err(format!(
                "IAM action {other} (declared by a handler) has no scope in deploy::iam::grants; \
                 add the narrowest resource and condition AWS supports for it"
            ));
        }
    };
    Ok(grants)
}

fn fleetprep_images() -> Grant {
    Grant {
        sid: "FleetprepImages",
        resources: vec![ec2_no_account("image/*")],
        condition: Some(json!({"Null": {
            format!("aws:ResourceTag/{IMAGE_TAG_KEY}"): "false"
        }})),
    }
}

/// The policy statements for `actions`: one per distinct scope, actions sorted.
pub fn statements<'a>(
    actions: impl IntoIterator<Item = &'a str>,
    scope: &Scope,
) -> Result<Vec<Value>, String> {
    let mut by_sid: BTreeMap<&'static str, (Grant, Vec<&'a str>)> = BTreeMap::new();
    for action in actions {
        for grant in grants(action, scope)? {
            let entry = by_sid
                .entry(grant.sid)
                .or_insert_with(|| (grant.clone(), Vec::new()));
            debug_assert_eq!(entry.0, grant, "one scope per statement id");
            if !entry.1.contains(&action) {
                entry.1.push(action);
            }
        }
    }
    Ok(by_sid
        .into_values()
        .map(|(grant, mut actions)| {
            actions.sort_unstable();
            let mut statement = json!({
                "Sid": grant.sid,
                "Effect": "Allow",
                "Action": actions,
                "Resource": if grant.resources.len() == 1 {
                    grant.resources[0].clone()
                } else {
                    Value::Array(grant.resources)
                },
            });
            if let Some(condition) = grant.condition {
                statement["Condition"] = condition;
            }
            statement
        })
        .collect())
}

/// Whether an IAM action changes something (anything but a Describe/Get/List call).
pub fn is_mutating(action: &str) -> bool {
    let name = action.split_once(':').map(|(_, n)| n).unwrap_or(action);
    !["Describe", "Get", "List"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            table_arn: json!({"Fn::GetAtt": ["HostnameTable", "Arn"]}),
            builder_role_arn: json!({"Ref": "BuilderRoleArn"}),
            require_imdsv2: true,
        }
    }

    #[test]
    fn every_declared_action_has_a_scope() {
        for action in workflows::iam::all_actions() {
            grants(action, &scope()).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn an_unknown_action_is_refused_not_granted_broadly() {
        let error = grants("ec2:DeleteVpc", &scope()).unwrap_err();
        assert!(
            error.contains("ec2:DeleteVpc") && error.contains("deploy::iam"),
            "{error}"
        );
    }

    #[test]
    fn statements_merge_actions_of_one_scope() {
        let statements = statements(
            [
                "ec2:StopInstances",
                "ec2:TerminateInstances",
                "dynamodb:GetItem",
            ],
            &scope(),
        )
        .unwrap();
        let builder = statements
            .iter()
            .find(|s| s["Sid"] == "BuilderInstances")
            .unwrap();
        assert_eq!(
            builder["Action"],
            json!(["ec2:StopInstances", "ec2:TerminateInstances"])
        );
        assert_eq!(
            builder["Condition"]["StringEquals"]["aws:ResourceTag/fleetprep:role"],
            "builder"
        );
        assert_eq!(statements.len(), 2);
    }

    #[test]
    fn imdsv2_is_a_launch_condition_only_when_asked() {
        let with = grants("ec2:RunInstances", &scope()).unwrap();
        assert_eq!(
            with[0].condition.as_ref().unwrap()["StringEquals"]["ec2:MetadataHttpTokens"],
            "required"
        );
        let without = grants(
            "ec2:RunInstances",
            &Scope {
                require_imdsv2: false,
                ..scope()
            },
        )
        .unwrap();
        assert!(
            without[0].condition.as_ref().unwrap()["StringEquals"]
                .get("ec2:MetadataHttpTokens")
                .is_none()
        );
    }

    /// Issue 11: the `user-data` rename method may set only the hostname tag, only on the
    /// group's instances.
    #[test]
    fn the_hostname_tag_is_scoped_to_the_group_and_its_key() {
        let grants = grants("ec2:CreateTags", &scope()).unwrap();
        let hostname = grants
            .iter()
            .find(|g| g.sid == "HostnameTagOnGroupInstances")
            .unwrap();
        let condition = hostname.condition.as_ref().unwrap();
        assert_eq!(
            condition["ForAllValues:StringEquals"]["aws:TagKeys"],
            json!(["fleetprep:hostname"])
        );
        assert_eq!(
            condition["StringEquals"]["aws:ResourceTag/aws:autoscaling:groupName"],
            json!({"Ref": "AutoScalingGroupName"})
        );
    }

    #[test]
    fn mutating_means_not_a_read() {
        assert!(is_mutating("ec2:TerminateInstances"));
        assert!(is_mutating("ssm:SendCommand"));
        assert!(!is_mutating("ec2:DescribeImages"));
        assert!(!is_mutating("ssm:GetCommandInvocation"));
        assert!(!is_mutating("states:ListStateMachines"));
    }
}
