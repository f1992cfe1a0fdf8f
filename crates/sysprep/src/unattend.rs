//! unattend.xml answer files, rendered with an XML writer (quick-xml) and parsed back.
//!
//! Layout follows Microsoft's "Unattended Windows Setup Reference": `generalize`
//! (Microsoft-Windows-Security-SPP `SkipRearm`, Microsoft-Windows-PnpSysprep
//! `PersistAllDeviceInstalls`), `specialize` (Microsoft-Windows-Shell-Setup `ComputerName`,
//! `CopyProfile`, `RegisteredOwner`, `RegisteredOrganization`, `TimeZone`) and `oobeSystem`
//! (Shell-Setup `OOBE`).
//!
//! The administrator password is never rendered by fleetprep. [`writer_script`] produces the
//! PowerShell that, *on the instance*, fetches the password from Secrets Manager or an SSM
//! SecureString parameter named in the config, adds `UserAccounts/AdministratorPassword` (in
//! the obfuscated `PlainText=false` form) through the XML DOM, and saves the file. Plaintext
//! never crosses the workflow, the logs or the command output.

use std::fmt;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde::{Deserialize, Serialize};

use crate::hostname::Hostname;
use crate::powershell::{check_windows_path, quote};

/// The answer-file namespace.
pub const UNATTEND_NS: &str = "urn:schemas-microsoft-com:unattend";
const WCM_NS: &str = "http://schemas.microsoft.com/WMIConfig/2002/State";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// Microsoft's public key token for inbox components.
pub(crate) const PUBLIC_KEY_TOKEN: &str = "31bf3856ad364e35";
/// The marker the writer script prints (with the path, never the content).
pub const UNATTEND_MARKER: &str = "FLEETPREP-UNATTEND:";

/// Why a value cannot go into an answer file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnattendError {
    /// A setting has an unusable value.
    #[error("unattend.{key}: {reason}")]
    InvalidValue {
        /// The config key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The document is not well-formed XML.
    #[error("unattend.xml is not well-formed: {0}")]
    Xml(String),
    /// The document is XML but not an answer file fleetprep understands.
    #[error("unattend.xml: {0}")]
    Structure(String),
}

/// Text that can appear in XML 1.0 (no control characters besides tab/newline/CR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct XmlText(
    // Invariant: no character outside XML 1.0's Char production.
    String,
);

impl XmlText {
    /// Checks `value`.
    pub fn new(value: &str) -> Result<Self, String> {
        if let Some(ch) = value
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(format!(
                "control character {ch:?} cannot appear in an XML answer file"
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for XmlText {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<XmlText> for String {
    fn from(value: XmlText) -> Self {
        value.0
    }
}

/// `ComputerName`: a valid name, or `*` for a random one chosen by Windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ComputerName {
    /// `*`: Windows picks a random name.
    Random,
    /// This name.
    Name(Hostname),
}

impl TryFrom<String> for ComputerName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value == "*" {
            return Ok(ComputerName::Random);
        }
        Hostname::parse(&value)
            .map(ComputerName::Name)
            .map_err(|e| format!("computer_name {value:?}: {e} (or use \"*\" for a random name)"))
    }
}

impl From<ComputerName> for String {
    fn from(value: ComputerName) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ComputerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputerName::Random => f.write_str("*"),
            ComputerName::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// A Windows time zone id such as `UTC` or `Pacific Standard Time` (tzutil /l).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(
    // Invariant: 1..=64 chars of letters, digits, space and ()+-.,_
    String,
);

impl TryFrom<String> for TimeZone {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ()+-.,_".contains(c));
        if ok {
            Ok(Self(value))
        } else {
            Err(format!(
                "time_zone {value:?} is not a Windows time zone id (e.g. \"UTC\", \"W. Europe Standard Time\"; see tzutil /l)"
            ))
        }
    }
}

impl From<TimeZone> for String {
    fn from(value: TimeZone) -> Self {
        value.0
    }
}

impl TimeZone {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `processorArchitecture` of every component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// x64.
    #[default]
    Amd64,
    /// ARM64 (Graviton).
    Arm64,
    /// 32-bit x86.
    X86,
}

impl Architecture {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
            Architecture::X86 => "x86",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "amd64" => Some(Architecture::Amd64),
            "arm64" => Some(Architecture::Arm64),
            "x86" => Some(Architecture::X86),
            _ => None,
        }
    }
}

/// Where the instance reads the administrator password from. Exactly one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPasswordRef", into = "RawPasswordRef")]
pub enum PasswordRef {
    /// A Secrets Manager secret id or ARN; `json_key` picks a field of a JSON secret.
    SecretsManager {
        /// Secret id or ARN.
        secret_id: String,
        /// Field of a JSON secret holding the password.
        json_key: Option<String>,
    },
    /// An SSM Parameter Store SecureString name.
    SsmParameter {
        /// Parameter name.
        name: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPasswordRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secrets_manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssm_parameter: Option<String>,
}

impl TryFrom<RawPasswordRef> for PasswordRef {
    type Error = String;
    fn try_from(raw: RawPasswordRef) -> Result<Self, Self::Error> {
        let reference = |what: &str, value: String| -> Result<String, String> {
            if value.trim().is_empty() || value.chars().any(char::is_control) || value.len() > 2048
            {
                Err(format!(
                    "admin_password.{what} must be a non-empty name or ARN without control characters"
                ))
            } else {
                Ok(value)
            }
        };
        match (raw.secrets_manager, raw.ssm_parameter) {
            (Some(secret), None) => Ok(PasswordRef::SecretsManager {
                secret_id: reference("secrets_manager", secret)?,
                json_key: raw.json_key.map(|k| reference("json_key", k)).transpose()?,
            }),
            (None, Some(name)) => {
                if raw.json_key.is_some() {
                    return Err("admin_password.json_key only applies to secrets_manager".into());
                }
                Ok(PasswordRef::SsmParameter {
                    name: reference("ssm_parameter", name)?,
                })
            }
            (Some(_), Some(_)) => Err(
                "admin_password: set either secrets_manager or ssm_parameter, not both".into(),
            ),
            (None, None) => Err(
                "admin_password: set secrets_manager = \"<secret id or ARN>\" or ssm_parameter = \"<SecureString name>\"".into(),
            ),
        }
    }
}

impl From<PasswordRef> for RawPasswordRef {
    fn from(value: PasswordRef) -> Self {
        match value {
            PasswordRef::SecretsManager {
                secret_id,
                json_key,
            } => RawPasswordRef {
                secrets_manager: Some(secret_id),
                json_key,
                ssm_parameter: None,
            },
            PasswordRef::SsmParameter { name } => RawPasswordRef {
                ssm_parameter: Some(name),
                ..RawPasswordRef::default()
            },
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_time_zone() -> TimeZone {
    TimeZone("UTC".to_owned())
}

/// The `[unattend]` section of a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnattendConfig {
    /// Set at launch by name-on-launch in `sysprep` mode; `*` lets Windows pick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<ComputerName>,
    /// Windows time zone id (default `UTC`).
    #[serde(default = "default_time_zone")]
    pub time_zone: TimeZone,
    /// `RegisteredOwner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_owner: Option<XmlText>,
    /// `RegisteredOrganization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_organization: Option<XmlText>,
    /// Copy the builder's administrator profile to the default profile (off by default:
    /// a frequent cause of specialize failures).
    #[serde(default)]
    pub copy_profile: bool,
    /// Keep the licensing state instead of spending one of the limited rearms. Off by default:
    /// Microsoft KB929828 reserves SkipRearm for images that are not for production.
    #[serde(default)]
    pub skip_rearm: bool,
    /// Keep drivers across generalize (the AWS launch agents' default).
    #[serde(default = "default_true")]
    pub persist_all_device_installs: bool,
    /// `processorArchitecture` of every component.
    #[serde(default)]
    pub processor_architecture: Architecture,
    /// Where the instance reads the administrator password (never rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<PasswordRef>,
}

impl Default for UnattendConfig {
    fn default() -> Self {
        Self {
            computer_name: None,
            time_zone: default_time_zone(),
            registered_owner: None,
            registered_organization: None,
            copy_profile: false,
            skip_rearm: false,
            persist_all_device_installs: true,
            processor_architecture: Architecture::Amd64,
            admin_password: None,
        }
    }
}

/// A rendered answer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The document, UTF-8, ending in a newline.
    pub xml: String,
    /// Settings worth a second look (CopyProfile, rearms).
    pub warnings: Vec<String>,
}

fn io_err(e: std::io::Error) -> UnattendError {
    UnattendError::Xml(e.to_string())
}

/// Renders the answer file (no password: see [`writer_script`]).
pub fn render(config: &UnattendConfig) -> Result<Rendered, UnattendError> {
    let mut warnings = Vec::new();
    if config.copy_profile {
        warnings.push("copy_profile = true: the builder's administrator profile becomes the default profile; CopyProfile failures are a common cause of specialize errors".to_owned());
    }
    if config.skip_rearm {
        warnings.push("skip_rearm = true: Microsoft KB929828 allows SkipRearm only for images that are not for production; production images should rearm".to_owned());
    }
    let arch = config.processor_architecture.as_str();
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .map_err(io_err)?;
    let component = |writer: &mut Writer<Vec<u8>>,
                     name: &str,
                     body: &dyn Fn(&mut Writer<Vec<u8>>) -> std::io::Result<()>|
     -> std::io::Result<()> {
        writer
            .create_element("component")
            .with_attribute(("name", name))
            .with_attribute(("processorArchitecture", arch))
            .with_attribute(("publicKeyToken", PUBLIC_KEY_TOKEN))
            .with_attribute(("language", "neutral"))
            .with_attribute(("versionScope", "nonSxS"))
            .with_attribute(("xmlns:wcm", WCM_NS))
            .with_attribute(("xmlns:xsi", XSI_NS))
            .write_inner_content(body)?;
        Ok(())
    };
    let text = |writer: &mut Writer<Vec<u8>>, name: &str, value: &str| -> std::io::Result<()> {
        writer
            .create_element(name)
            .write_text_content(BytesText::new(value))?;
        Ok(())
    };
    let bool_text = |b: bool| if b { "true" } else { "false" };
    writer
        .create_element("unattend")
        .with_attribute(("xmlns", UNATTEND_NS))
        .write_inner_content(|w| {
            w.create_element("settings")
                .with_attribute(("pass", "generalize"))
                .write_inner_content(|w| {
                    component(w, "Microsoft-Windows-Security-SPP", &|w| {
                        text(w, "SkipRearm", if config.skip_rearm { "1" } else { "0" })
                    })?;
                    component(w, "Microsoft-Windows-PnpSysprep", &|w| {
                        text(
                            w,
                            "PersistAllDeviceInstalls",
                            bool_text(config.persist_all_device_installs),
                        )
                    })
                })?;
            w.create_element("settings")
                .with_attribute(("pass", "specialize"))
                .write_inner_content(|w| {
                    component(w, "Microsoft-Windows-Shell-Setup", &|w| {
                        if let Some(name) = &config.computer_name {
                            text(w, "ComputerName", &name.to_string())?;
                        }
                        text(w, "CopyProfile", bool_text(config.copy_profile))?;
                        if let Some(owner) = &config.registered_owner {
                            text(w, "RegisteredOwner", owner.as_str())?;
                        }
                        if let Some(org) = &config.registered_organization {
                            text(w, "RegisteredOrganization", org.as_str())?;
                        }
                        text(w, "TimeZone", config.time_zone.as_str())
                    })
                })?;
            w.create_element("settings")
                .with_attribute(("pass", "oobeSystem"))
                .write_inner_content(|w| {
                    component(w, "Microsoft-Windows-Shell-Setup", &|w| {
                        w.create_element("OOBE").write_inner_content(|w| {
                            text(w, "HideEULAPage", "true")?;
                            text(w, "HideLocalAccountScreen", "true")?;
                            text(w, "HideOEMRegistrationScreen", "true")?;
                            text(w, "HideOnlineAccountScreens", "true")?;
                            text(w, "HideWirelessSetupInOOBE", "true")?;
                            text(w, "ProtectYourPC", "3")
                        })?;
                        Ok(())
                    })
                })?;
            Ok(())
        })
        .map_err(io_err)?;
    let mut xml =
        String::from_utf8(writer.into_inner()).map_err(|e| UnattendError::Xml(e.to_string()))?;
    xml.push('\n');
    Ok(Rendered { xml, warnings })
}

/// A parsed element: local name, attributes, text and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (prefix stripped).
    pub name: String,
    /// Attributes as written (qualified names), values unescaped.
    pub attributes: Vec<(String, String)>,
    /// Concatenated text content, unescaped.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// An attribute by qualified name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_owned(),
        None => name.to_owned(),
    }
}

pub(crate) fn resolve_entity(
    entity: &quick_xml::events::BytesRef<'_>,
) -> Result<String, UnattendError> {
    if entity.is_char_ref() {
        return match entity.resolve_char_ref() {
            Ok(Some(ch)) => Ok(ch.to_string()),
            Ok(None) | Err(_) => Err(UnattendError::Xml(format!(
                "invalid character reference &{};",
                &**entity
            ))),
        };
    }
    match &**entity {
        "amp" => Ok("&".into()),
        "lt" => Ok("<".into()),
        "gt" => Ok(">".into()),
        "quot" => Ok("\"".into()),
        "apos" => Ok("'".into()),
        other => Err(UnattendError::Xml(format!("unknown entity &{other};"))),
    }
}

/// Parses any XML document into an [`Element`] tree (the root element).
pub fn parse_xml(xml: &str) -> Result<Element, UnattendError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let start = |e: &quick_xml::events::BytesStart<'_>| -> Result<Element, UnattendError> {
        let mut element = Element {
            name: local(e.name().as_ref()),
            ..Element::default()
        };
        for attribute in e.attributes() {
            let attribute = attribute.map_err(|e| UnattendError::Xml(e.to_string()))?;
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| UnattendError::Xml(e.to_string()))?;
            element
                .attributes
                .push((attribute.key.as_ref().to_owned(), value.into_owned()));
        }
        Ok(element)
    };
    loop {
        let event = reader.read_event().map_err(|e| {
            UnattendError::Xml(format!("at byte {}: {e}", reader.buffer_position()))
        })?;
        match event {
            Event::Start(e) => stack.push(start(&e)?),
            Event::Empty(e) => {
                let element = start(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    return Err(UnattendError::Xml("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(entity) => {
                let resolved = resolve_entity(&entity)?;
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(UnattendError::Xml(format!(
            "element <{}> is never closed",
            stack.last().map(|e| e.name.as_str()).unwrap_or("?")
        )));
    }
    root.ok_or_else(|| UnattendError::Xml("no root element".into()))
}

/// Reads an answer file back into the settings fleetprep manages (the round trip of
/// [`render`]; `admin_password` is never in the file, so it is `None`).
pub fn parse(xml: &str) -> Result<UnattendConfig, UnattendError> {
    let root = parse_xml(xml)?;
    if root.name != "unattend" || root.attribute("xmlns") != Some(UNATTEND_NS) {
        return Err(UnattendError::Structure(format!(
            "the root must be <unattend xmlns=\"{UNATTEND_NS}\">"
        )));
    }
    let component = |pass: &str, name: &str| -> Option<&Element> {
        root.children
            .iter()
            .filter(|s| s.name == "settings" && s.attribute("pass") == Some(pass))
            .flat_map(|s| s.children.iter())
            .find(|c| c.name == "component" && c.attribute("name") == Some(name))
    };
    let value = |pass: &str, name: &str, field: &str| -> Option<String> {
        component(pass, name)
            .and_then(|c| c.child(field))
            .map(|e| e.text.trim().to_owned())
    };
    let invalid = |key: &'static str, reason: String| UnattendError::InvalidValue { key, reason };
    let mut config = UnattendConfig::default();
    let mut architecture = None;
    for settings in &root.children {
        for c in &settings.children {
            if let Some(arch) = c.attribute("processorArchitecture") {
                let arch = Architecture::parse(arch).ok_or_else(|| {
                    invalid(
                        "processor_architecture",
                        format!("unknown architecture {arch:?}"),
                    )
                })?;
                if architecture.is_some_and(|a| a != arch) {
                    return Err(invalid(
                        "processor_architecture",
                        "components disagree on processorArchitecture".into(),
                    ));
                }
                architecture = Some(arch);
            }
        }
    }
    config.processor_architecture = architecture.unwrap_or_default();
    if let Some(v) = value("generalize", "Microsoft-Windows-Security-SPP", "SkipRearm") {
        config.skip_rearm = v == "1";
    }
    if let Some(v) = value(
        "generalize",
        "Microsoft-Windows-PnpSysprep",
        "PersistAllDeviceInstalls",
    ) {
        config.persist_all_device_installs = v == "true";
    }
    let shell = "Microsoft-Windows-Shell-Setup";
    if let Some(v) = value("specialize", shell, "ComputerName") {
        config.computer_name =
            Some(ComputerName::try_from(v).map_err(|r| invalid("computer_name", r))?);
    }
    if let Some(v) = value("specialize", shell, "CopyProfile") {
        config.copy_profile = v == "true";
    }
    // Owner and organization keep their exact text (no trim): they are free text.
    let exact = |field: &str| {
        component("specialize", shell)
            .and_then(|c| c.child(field))
            .map(|e| e.text.clone())
    };
    if let Some(v) = exact("RegisteredOwner") {
        config.registered_owner =
            Some(XmlText::new(&v).map_err(|r| invalid("registered_owner", r))?);
    }
    if let Some(v) = exact("RegisteredOrganization") {
        config.registered_organization =
            Some(XmlText::new(&v).map_err(|r| invalid("registered_organization", r))?);
    }
    if let Some(v) = value("specialize", shell, "TimeZone") {
        config.time_zone = TimeZone::try_from(v).map_err(|r| invalid("time_zone", r))?;
    }
    Ok(config)
}

/// The PowerShell that writes the answer file on the instance: it decodes the rendered XML,
/// adds the administrator password fetched *there* from the configured source (AWS Tools for
/// PowerShell, preinstalled on AWS Windows AMIs: `Get-SECSecretValue`, `Get-SSMParameter`),
/// and saves it to `destination`. It prints only the destination.
pub fn writer_script(config: &UnattendConfig, destination: &str) -> Result<String, UnattendError> {
    writer(config, destination, None, false)
}

/// The builder's side of [`crate::merge::merge`]: loads the launch agent's own answer file at
/// `destination`, sets the same [`crate::merge::managed_settings`], removes any
/// `AdministratorPassword`, adds the configured password source if any (as
/// [`writer_script`] does) and saves the file in place. Everything else the agent put in the
/// file (RDP commands, locales, device settings) stays.
pub fn merge_script(config: &UnattendConfig, destination: &str) -> Result<String, UnattendError> {
    writer(config, destination, None, true)
}

/// [`writer_script`] for a name known only on the instance: `prelude` (PowerShell) runs first
/// and `name_expr` is a PowerShell expression for the name, which replaces the text of the
/// specialize `ComputerName` element (so `config.computer_name` must be set, e.g. to `*`).
/// Setting `InnerText` through `XmlDocument` escapes whatever the value holds.
pub fn writer_script_with_name(
    config: &UnattendConfig,
    destination: &str,
    prelude: &str,
    name_expr: &str,
) -> Result<String, UnattendError> {
    if config.computer_name.is_none() {
        return Err(UnattendError::InvalidValue {
            key: "computer_name",
            reason: "must be set (e.g. to \"*\") for the instance's name to replace it".into(),
        });
    }
    writer(config, destination, Some((prelude, name_expr)), false)
}

/// Applies [`crate::merge::managed_settings`] to `$answer` in PowerShell, creating the pass,
/// component or element where the file has none, and removes every administrator password.
fn merge_settings_script(config: &UnattendConfig) -> String {
    let mut script = format!(
        r#"$u = {ns}
$mergeNs = New-Object System.Xml.XmlNamespaceManager($answer.NameTable)
$mergeNs.AddNamespace('u', $u)
function Set-AnswerValue([string]$Pass, [string]$Component, [string]$Element, [string]$Value) {{
    $settings = $answer.DocumentElement.SelectSingleNode(("u:settings[@pass='{{0}}']" -f $Pass), $mergeNs)
    if ($null -eq $settings) {{
        $settings = $answer.CreateElement('settings', $u)
        $settings.SetAttribute('pass', $Pass)
        [void]$answer.DocumentElement.AppendChild($settings)
    }}
    $component = $settings.SelectSingleNode(("u:component[@name='{{0}}']" -f $Component), $mergeNs)
    if ($null -eq $component) {{
        $component = $answer.CreateElement('component', $u)
        $component.SetAttribute('name', $Component)
        $component.SetAttribute('processorArchitecture', {arch})
        $component.SetAttribute('publicKeyToken', {token})
        $component.SetAttribute('language', 'neutral')
        $component.SetAttribute('versionScope', 'nonSxS')
        [void]$settings.AppendChild($component)
    }}
    $node = $component.SelectSingleNode(('u:{{0}}' -f $Element), $mergeNs)
    if ($null -eq $node) {{
        $node = $answer.CreateElement($Element, $u)
        [void]$component.AppendChild($node)
    }}
    $node.InnerText = $Value
}}
"#,
        ns = quote(UNATTEND_NS),
        arch = quote(config.processor_architecture.as_str()),
        token = quote(PUBLIC_KEY_TOKEN),
    );
    for setting in crate::merge::managed_settings(config) {
        script.push_str(&format!(
            "Set-AnswerValue {} {} {} {}\n",
            quote(setting.pass),
            quote(setting.component),
            quote(setting.element),
            quote(&setting.value)
        ));
    }
    script.push_str(REMOVE_PASSWORDS);
    script
}

/// Removes every `AdministratorPassword` from `$answer` (no password stays in an image:
/// Microsoft "Hide Sensitive Data in an Answer File": it is only obfuscated).
const REMOVE_PASSWORDS: &str = "foreach ($secret in @($answer.SelectNodes(\"//*[local-name()='AdministratorPassword']\"))) { [void]$secret.ParentNode.RemoveChild($secret) }\n";

fn writer(
    config: &UnattendConfig,
    destination: &str,
    name: Option<(&str, &str)>,
    merge_on_disk: bool,
) -> Result<String, UnattendError> {
    check_windows_path("destination", destination).map_err(|e| UnattendError::InvalidValue {
        key: "destination",
        reason: e.to_string(),
    })?;
    let mut script = if merge_on_disk {
        render(config)?;
        format!(
            "# fleetprep: merge fleetprep's settings into the launch agent's answer file; the administrator password, if any, is read here, on the instance.\n$ErrorActionPreference = 'Stop'\n$destination = {}\nif (-not (Test-Path -LiteralPath $destination)) {{ throw ('the launch agent''s answer file {{0}} is missing: reinstall the agent or set the answer file explicitly' -f $destination) }}\n$answer = New-Object System.Xml.XmlDocument\n$answer.PreserveWhitespace = $false\n$answer.Load($destination)\n{}",
            quote(destination),
            merge_settings_script(config)
        )
    } else {
        let rendered = render(config)?;
        let encoded = base64(rendered.xml.as_bytes());
        format!(
            "# fleetprep: write unattend.xml; the administrator password is read here, on the instance.\n$ErrorActionPreference = 'Stop'\n$destination = {}\n$xmlText = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String({}))\n$answer = New-Object System.Xml.XmlDocument\n$answer.PreserveWhitespace = $false\n$answer.LoadXml($xmlText)\n",
            quote(destination),
            quote(&encoded)
        )
    };
    if let Some((prelude, name_expr)) = name {
        script.push_str(prelude);
        if !prelude.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(&format!(
            r#"$nameSpaces = New-Object System.Xml.XmlNamespaceManager($answer.NameTable)
$nameSpaces.AddNamespace('u', {ns})
$nameNode = $answer.SelectSingleNode("//u:settings[@pass='specialize']/u:component[@name='Microsoft-Windows-Shell-Setup']/u:ComputerName", $nameSpaces)
if ($null -eq $nameNode) {{ throw 'the rendered answer file has no specialize Shell-Setup ComputerName' }}
$nameNode.InnerText = {name_expr}
"#,
            ns = quote(UNATTEND_NS)
        ));
    }
    if let Some(source) = &config.admin_password {
        match source {
            PasswordRef::SecretsManager {
                secret_id,
                json_key,
            } => {
                script.push_str(&format!(
                    "$password = (Get-SECSecretValue -SecretId {}).SecretString\n",
                    quote(secret_id)
                ));
                if let Some(key) = json_key {
                    script.push_str(&format!(
                        "$password = ($password | ConvertFrom-Json).PSObject.Properties[{}].Value\n",
                        quote(key)
                    ));
                }
            }
            PasswordRef::SsmParameter { name } => {
                script.push_str(&format!(
                    "$password = (Get-SSMParameter -Name {} -WithDecryption $true).Value\n",
                    quote(name)
                ));
            }
        }
        script.push_str(&format!(
            r#"if ([string]::IsNullOrEmpty($password)) {{ throw 'the administrator password source returned an empty value' }}
$ns = New-Object System.Xml.XmlNamespaceManager($answer.NameTable)
$ns.AddNamespace('u', {ns})
$shell = $answer.SelectSingleNode("//u:settings[@pass='oobeSystem']/u:component[@name='Microsoft-Windows-Shell-Setup']", $ns)
if ($null -eq $shell) {{ throw 'the rendered answer file has no oobeSystem Shell-Setup component' }}
$accounts = $answer.CreateElement('UserAccounts', {ns})
$admin = $answer.CreateElement('AdministratorPassword', {ns})
$value = $answer.CreateElement('Value', {ns})
# Windows' obfuscated form: base64 of UTF-16LE(password + 'AdministratorPassword').
$value.InnerText = [System.Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($password + 'AdministratorPassword'))
$plain = $answer.CreateElement('PlainText', {ns})
$plain.InnerText = 'false'
[void]$admin.AppendChild($value)
[void]$admin.AppendChild($plain)
[void]$accounts.AppendChild($admin)
[void]$shell.AppendChild($accounts)
Remove-Variable -Name password
"#,
            ns = quote(UNATTEND_NS)
        ));
        script.push_str(&first_boot_password_removal());
    }
    script.push_str(&format!(
        "[void](New-Item -ItemType Directory -Force -Path (Split-Path -Parent $destination))\n$answer.Save($destination)\nWrite-Output ({} + $destination)\n",
        quote(UNATTEND_MARKER)
    ));
    Ok(script)
}

/// Every answer-file location on an instance: each agent's, and the copies Windows Setup keeps
/// in `%WINDIR%\Panther` (Microsoft "Deployment Troubleshooting and Log Files").
pub const ANSWER_FILE_LOCATIONS: [&str; 6] = [
    r"C:\ProgramData\Amazon\EC2Launch\sysprep\unattend.xml",
    r"C:\ProgramData\Amazon\EC2-Windows\Launch\Sysprep\Unattend.xml",
    r"C:\Program Files\Amazon\Ec2ConfigService\sysprep2008.xml",
    r"C:\Windows\System32\Sysprep\unattend.xml",
    r"C:\Windows\Panther\unattend.xml",
    r"C:\Windows\Panther\Unattend\unattend.xml",
];

/// The PowerShell that removes every `AdministratorPassword` from every answer file on disk.
pub fn password_scrub_script() -> String {
    let paths: Vec<String> = ANSWER_FILE_LOCATIONS.iter().map(|p| quote(p)).collect();
    format!(
        "foreach ($path in @({})) {{\n    if (Test-Path -LiteralPath $path) {{\n        $answer = New-Object System.Xml.XmlDocument\n        $answer.Load($path)\n        {}        $answer.Save($path)\n    }}\n}}\n",
        paths.join(", "),
        REMOVE_PASSWORDS
    )
}

/// When a user insists on an answer-file password: the first boot removes it from every
/// answer file on disk once Windows Setup is done, through `SetupComplete.cmd`, which Setup
/// runs as SYSTEM after OOBE and before anyone logs on (Microsoft "Add a Custom Script to
/// Windows Setup"). The line is appended (EC2Config's own SetupComplete.cmd keeps its line) and
/// only once. The scrub runs as `-EncodedCommand` so cmd.exe quoting cannot change it.
fn first_boot_password_removal() -> String {
    let utf16: Vec<u8> = password_scrub_script()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let line = format!(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {} & REM fleetprep-password-scrub",
        base64(&utf16)
    );
    format!(
        r#"# A password in an answer file is only obfuscated (Hide Sensitive Data in an Answer File):
# the first boot removes it from every answer file on disk.
$setupComplete = Join-Path $env:WINDIR 'Setup\Scripts\SetupComplete.cmd'
[void](New-Item -ItemType Directory -Force -Path (Split-Path -Parent $setupComplete))
if (-not ((Test-Path -LiteralPath $setupComplete) -and (Select-String -LiteralPath $setupComplete -SimpleMatch 'fleetprep-password-scrub' -Quiet))) {{
    Add-Content -LiteralPath $setupComplete -Value {} -Encoding ASCII
}}
"#,
        quote(&line)
    )
}

/// Standard base64 (RFC 4648) for embedding the XML in the script.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> UnattendConfig {
        UnattendConfig {
            computer_name: Some(ComputerName::Name(Hostname::parse("WEB-001").unwrap())),
            time_zone: TimeZone::try_from("W. Europe Standard Time".to_owned()).unwrap(),
            registered_owner: Some(
                XmlText::new("Ops <ops@example.com> & \"friends\" ]]>").unwrap(),
            ),
            registered_organization: Some(XmlText::new("Example 'Corp'\nLine two").unwrap()),
            copy_profile: true,
            skip_rearm: true,
            persist_all_device_installs: false,
            processor_architecture: Architecture::Arm64,
            admin_password: None,
        }
    }

    #[test]
    fn render_parse_round_trip() {
        for config in [UnattendConfig::default(), full()] {
            let rendered = render(&config).unwrap();
            assert_eq!(parse(&rendered.xml).unwrap(), config, "{}", rendered.xml);
        }
    }

    /// Issue 10, point 9: KB929828 reserves SkipRearm for non-production images, so it is off
    /// unless asked for, and asking for it warns.
    #[test]
    fn skip_rearm_is_off_by_default() {
        let config = crate::config::load_unattend("[unattend]\n", "u.toml").unwrap();
        assert!(!config.skip_rearm);
        let xml = render(&config).unwrap().xml;
        assert!(xml.contains("<SkipRearm>0</SkipRearm>"), "{xml}");
    }

    #[test]
    fn copy_profile_and_rearm_warn() {
        assert!(
            render(&UnattendConfig::default())
                .unwrap()
                .warnings
                .is_empty()
        );
        let warnings = render(&full()).unwrap().warnings;
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("copy_profile"));
    }

    #[test]
    fn structure_follows_the_reference() {
        let root = parse_xml(&render(&full()).unwrap().xml).unwrap();
        let passes: Vec<&str> = root
            .children
            .iter()
            .filter_map(|s| s.attribute("pass"))
            .collect();
        assert_eq!(passes, ["generalize", "specialize", "oobeSystem"]);
        for settings in &root.children {
            for component in &settings.children {
                assert_eq!(component.attribute("processorArchitecture"), Some("arm64"));
                assert_eq!(
                    component.attribute("publicKeyToken"),
                    Some(PUBLIC_KEY_TOKEN)
                );
            }
        }
    }

    #[test]
    fn the_password_is_never_rendered() {
        let mut config = full();
        config.admin_password = Some(PasswordRef::SecretsManager {
            secret_id: "arn:aws:secretsmanager:us-east-1:123456789012:secret:admin-AbCdEf".into(),
            json_key: Some("password".into()),
        });
        let xml = render(&config).unwrap().xml;
        assert!(!xml.contains("AdministratorPassword"));
        assert!(!xml.contains("secretsmanager"));
        let script = writer_script(&config, r"C:\Windows\Panther\unattend.xml").unwrap();
        assert!(script.contains("Get-SECSecretValue -SecretId 'arn:aws:secretsmanager"));
        // Issue 10, bug 5: the first boot removes the password from every answer file.
        assert!(script.contains(r"Setup\Scripts\SetupComplete.cmd"));
        assert!(script.contains("fleetprep-password-scrub"));
        let scrub = password_scrub_script();
        for path in ANSWER_FILE_LOCATIONS {
            assert!(scrub.contains(&quote(path)), "{path}");
        }
        assert!(scrub.contains("RemoveChild($secret)"));
        // Without a password source nothing is scheduled.
        let plain = writer_script(&UnattendConfig::default(), r"C:\x\u.xml").unwrap();
        assert!(!plain.contains("SetupComplete"));
        assert!(script.contains("Properties['password']"));
        assert!(script.contains("Remove-Variable -Name password"));
        let ssm = UnattendConfig {
            admin_password: Some(PasswordRef::SsmParameter {
                name: "/fleet/admin".into(),
            }),
            ..UnattendConfig::default()
        };
        let script = writer_script(&ssm, r"C:\x\u.xml").unwrap();
        assert!(script.contains("Get-SSMParameter -Name '/fleet/admin' -WithDecryption $true"));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(XmlText::new("bell\u{7}").is_err());
        assert!(TimeZone::try_from("UTC; rm".to_owned()).is_err());
        assert!(ComputerName::try_from("bad_name".to_owned()).is_err());
        assert!(parse("<unattend/>").is_err());
        assert!(parse("<unattend xmlns=\"urn:schemas-microsoft-com:unattend\">").is_err());
    }

    proptest::proptest! {
        /// Every config that passes the checks renders to XML that parses back to it exactly:
        /// free text with markup characters, quotes, tabs and line breaks included.
        #[test]
        fn any_config_round_trips(
            owner in proptest::option::of("([^\\p{Cc}]|[\t\r\n<>&'\"\\]\\]])*"),
            organization in proptest::option::of("([^\\p{Cc}]|[\t\r\n ])*"),
            name in proptest::option::of("\\*|[A-Za-z][A-Za-z0-9-]{0,13}[A-Za-z0-9]"),
            time_zone in proptest::sample::select(vec!["UTC", "Pacific Standard Time", "W. Europe Standard Time", "UTC+12"]),
            copy_profile: bool,
            skip_rearm: bool,
            persist_all_device_installs: bool,
            architecture in proptest::sample::select(vec![Architecture::Amd64, Architecture::Arm64, Architecture::X86]),
        ) {
            let computer_name = match name {
                Some(name) => match ComputerName::try_from(name) {
                    Ok(name) => Some(name),
                    // A reserved word such as "SYSTEM": not a config that loads.
                    Err(_) => return Ok(()),
                },
                None => None,
            };
            let config = UnattendConfig {
                computer_name,
                time_zone: TimeZone::try_from(time_zone.to_owned()).unwrap(),
                registered_owner: owner.map(|v| XmlText::new(&v).unwrap()),
                registered_organization: organization.map(|v| XmlText::new(&v).unwrap()),
                copy_profile,
                skip_rearm,
                persist_all_device_installs,
                processor_architecture: architecture,
                admin_password: None,
            };
            let rendered = render(&config).unwrap();
            proptest::prop_assert_eq!(parse(&rendered.xml).unwrap(), config, "{}", rendered.xml);
        }
    }
}
