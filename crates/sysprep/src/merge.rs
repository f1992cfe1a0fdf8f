//! Merging fleetprep's settings into a launch agent's own answer file.
//!
//! Each agent ships an answer file that Sysprep uses ("Create a standardized Amazon Machine
//! Image (AMI) using Sysprep"): EC2Launch v2's `sysprep\unattend.xml`, EC2Launch v1's
//! `Sysprep\Unattend.xml`, EC2Config's `sysprep2008.xml`. They carry what an instance needs
//! at first boot: the specialize-pass commands that turn RDP back on and randomize the
//! administrator password, the locales, `DoNotCleanUpNonPresentDevices`. Replacing the file
//! would lose all of that (RDP stays off on every instance), so fleetprep only sets the values
//! it manages ([`managed_settings`]) and keeps every other element, attribute and comment.
//!
//! The same list of settings is applied twice: here, offline, to a copy of the agent's file
//! (`fleetprep unattend render --base FILE`), and on the builder by
//! [`crate::unattend::merge_script`], to the file on disk.
//!
//! Administrator passwords are removed: each agent randomizes the password at launch by its
//! own setting, and a password in an answer file is only obfuscated, never protected
//! (Microsoft "Hide Sensitive Data in an Answer File").

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::unattend::{PUBLIC_KEY_TOKEN, Rendered, UNATTEND_NS, UnattendConfig, UnattendError};

/// One value fleetprep manages: `<settings pass>` / `<component name>` / `<element>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The configuration pass (`generalize`, `specialize`, ...).
    pub pass: &'static str,
    /// The component name, e.g. `Microsoft-Windows-Shell-Setup`.
    pub component: &'static str,
    /// The element directly inside the component.
    pub element: &'static str,
    /// Its text.
    pub value: String,
}

/// The values fleetprep sets, in document order; everything else stays the agent's.
pub fn managed_settings(config: &UnattendConfig) -> Vec<Setting> {
    let bool_text = |b: bool| if b { "true" } else { "false" }.to_owned();
    let setting = |pass, component, element, value| Setting {
        pass,
        component,
        element,
        value,
    };
    let shell = "Microsoft-Windows-Shell-Setup";
    let mut settings = vec![
        setting(
            "generalize",
            "Microsoft-Windows-Security-SPP",
            "SkipRearm",
            if config.skip_rearm { "1" } else { "0" }.to_owned(),
        ),
        setting(
            "generalize",
            "Microsoft-Windows-PnpSysprep",
            "PersistAllDeviceInstalls",
            bool_text(config.persist_all_device_installs),
        ),
    ];
    if let Some(name) = &config.computer_name {
        settings.push(setting(
            "specialize",
            shell,
            "ComputerName",
            name.to_string(),
        ));
    }
    settings.push(setting(
        "specialize",
        shell,
        "CopyProfile",
        bool_text(config.copy_profile),
    ));
    if let Some(owner) = &config.registered_owner {
        settings.push(setting(
            "specialize",
            shell,
            "RegisteredOwner",
            owner.as_str().to_owned(),
        ));
    }
    if let Some(org) = &config.registered_organization {
        settings.push(setting(
            "specialize",
            shell,
            "RegisteredOrganization",
            org.as_str().to_owned(),
        ));
    }
    settings.push(setting(
        "specialize",
        shell,
        "TimeZone",
        config.time_zone.as_str().to_owned(),
    ));
    settings
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Element(Element),
    Text(String),
    Comment(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Element {
    /// As written, with any prefix.
    qname: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Element {
    fn local(&self) -> &str {
        self.qname.rsplit_once(':').map_or(&self.qname, |(_, l)| l)
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The child matching `matches`, appended from `make` when there is none.
    fn child_or_insert(
        &mut self,
        matches: impl Fn(&Element) -> bool,
        make: impl FnOnce() -> Element,
    ) -> &mut Element {
        let index = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if matches(e)));
        let index = match index {
            Some(index) => index,
            None => {
                self.children.push(Node::Element(make()));
                self.children.len() - 1
            }
        };
        match &mut self.children[index] {
            Node::Element(e) => e,
            _ => unreachable!("the index points at an element"),
        }
    }

    fn remove_all(&mut self, local: &str) -> usize {
        let before = self.children.len();
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.local() == local));
        let mut removed = before - self.children.len();
        for child in self.elements_mut() {
            removed += child.remove_all(local);
        }
        removed
    }
}

fn xml_err(e: impl std::fmt::Display) -> UnattendError {
    UnattendError::Xml(e.to_string())
}

fn start(e: &BytesStart<'_>) -> Result<Element, UnattendError> {
    let mut element = Element {
        qname: e.name().as_ref().to_owned(),
        ..Element::default()
    };
    for attribute in e.attributes() {
        let attribute = attribute.map_err(xml_err)?;
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(xml_err)?;
        element
            .attributes
            .push((attribute.key.as_ref().to_owned(), value.into_owned()));
    }
    Ok(element)
}

/// The root element and the comments before it.
fn parse(xml: &str) -> Result<(Vec<String>, Element), UnattendError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut prolog = Vec::new();
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let push = |stack: &mut Vec<Element>, root: &mut Option<Element>, node: Node| match node {
        Node::Element(e) if stack.is_empty() => *root = Some(e),
        node => {
            if let Some(parent) = stack.last_mut() {
                parent.children.push(node);
            }
        }
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| xml_err(format!("at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Start(e) => stack.push(start(&e)?),
            Event::Empty(e) => {
                let element = start(&e)?;
                push(&mut stack, &mut root, Node::Element(element));
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| xml_err("unbalanced end tag"))?;
                push(&mut stack, &mut root, Node::Element(element));
            }
            Event::Text(t) => {
                let text = t.xml10_content().into_owned();
                if !text.trim().is_empty() {
                    push(&mut stack, &mut root, Node::Text(text));
                }
            }
            Event::CData(t) => {
                let text = t.into_inner().into_owned();
                push(&mut stack, &mut root, Node::Text(text));
            }
            Event::GeneralRef(entity) => {
                let text = crate::unattend::resolve_entity(&entity)?;
                match stack.last_mut().and_then(|p| p.children.last_mut()) {
                    Some(Node::Text(previous)) => previous.push_str(&text),
                    _ => push(&mut stack, &mut root, Node::Text(text)),
                }
            }
            Event::Comment(c) => {
                let text = c.into_inner().into_owned();
                if stack.is_empty() && root.is_none() {
                    prolog.push(text);
                } else {
                    push(&mut stack, &mut root, Node::Comment(text));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(xml_err(format!("element <{}> is never closed", open.qname)));
    }
    let root = root.ok_or_else(|| xml_err("no root element"))?;
    Ok((prolog, root))
}

fn write(writer: &mut Writer<Vec<u8>>, element: &Element) -> std::io::Result<()> {
    let mut start = BytesStart::new(element.qname.as_str());
    for (key, value) in &element.attributes {
        start.push_attribute((key.as_str(), value.as_str()));
    }
    if element.children.is_empty() {
        return writer.write_event(Event::Empty(start));
    }
    writer.write_event(Event::Start(start))?;
    for child in &element.children {
        match child {
            Node::Element(e) => write(writer, e)?,
            Node::Text(t) => writer.write_event(Event::Text(BytesText::new(t)))?,
            Node::Comment(c) => {
                writer.write_event(Event::Comment(BytesText::from_escaped(c.as_str())))?
            }
        }
    }
    writer.write_event(Event::End(BytesEnd::new(element.qname.as_str())))
}

/// `base` (an agent's answer file) with `config`'s settings in place and every
/// `AdministratorPassword` removed; everything else as the agent wrote it.
pub fn merge(base: &str, config: &UnattendConfig) -> Result<Rendered, UnattendError> {
    let (prolog, mut root) = parse(base)?;
    if root.local() != "unattend" {
        return Err(UnattendError::Structure(format!(
            "the root is <{}>, not <unattend xmlns=\"{UNATTEND_NS}\">: is this an answer file?",
            root.qname
        )));
    }
    let architecture = root
        .elements()
        .flat_map(|s| s.elements())
        .find_map(|c| c.attribute("processorArchitecture").map(str::to_owned))
        .unwrap_or_else(|| config.processor_architecture.as_str().to_owned());
    for setting in managed_settings(config) {
        let settings = root.child_or_insert(
            |e| e.local() == "settings" && e.attribute("pass") == Some(setting.pass),
            || Element {
                qname: "settings".into(),
                attributes: vec![("pass".into(), setting.pass.into())],
                children: Vec::new(),
            },
        );
        let component = settings.child_or_insert(
            |e| e.local() == "component" && e.attribute("name") == Some(setting.component),
            || Element {
                qname: "component".into(),
                attributes: vec![
                    ("name".into(), setting.component.into()),
                    ("processorArchitecture".into(), architecture.clone()),
                    ("publicKeyToken".into(), PUBLIC_KEY_TOKEN.into()),
                    ("language".into(), "neutral".into()),
                    ("versionScope".into(), "nonSxS".into()),
                ],
                children: Vec::new(),
            },
        );
        let element = component.child_or_insert(
            |e| e.local() == setting.element,
            || Element {
                qname: setting.element.into(),
                ..Element::default()
            },
        );
        element.children = vec![Node::Text(setting.value)];
    }
    let mut warnings = crate::unattend::render(config)?.warnings;
    if root.remove_all("AdministratorPassword") > 0 {
        warnings.push("removed AdministratorPassword from the answer file: the launch agent randomizes the password at launch (v2 setAdminAccount, v1 adminPasswordType, EC2Config Ec2SetPassword)".to_owned());
    }
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .map_err(xml_err)?;
    for comment in &prolog {
        writer
            .write_event(Event::Comment(BytesText::from_escaped(comment.as_str())))
            .map_err(xml_err)?;
    }
    write(&mut writer, &root).map_err(xml_err)?;
    let mut xml = String::from_utf8(writer.into_inner()).map_err(xml_err)?;
    xml.push('\n');
    Ok(Rendered { xml, warnings })
}
