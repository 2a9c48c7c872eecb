//! The emulated org: its records, credentials, connected app, reports and Event Manager
//! settings. Generated from a seed, or loaded from (and saved to) a JSON file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sfwire::events::{LoginEventStream, ReportEventStream};
use sfwire::id::{SfId, prefix, record_key};

use crate::model::{FieldType, OBJECTS, StoredEvent, Table, Value, object_schema};
use crate::names;
use crate::rng::{ALNUM, Rng};
use crate::sessions::{IpRange, RefreshPolicy};

/// The event types Event Manager switches, each a stream and a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    Login,
    Logout,
    Report,
}

impl EventType {
    pub const ALL: [EventType; 3] = [EventType::Login, EventType::Logout, EventType::Report];

    /// The streaming channel's entity name (`ReportEventStream`).
    pub fn stream_entity(self) -> &'static str {
        match self {
            EventType::Login => "LoginEventStream",
            EventType::Logout => "LogoutEventStream",
            EventType::Report => "ReportEventStream",
        }
    }

    /// The storage big object's entity name (`ReportEvent`).
    pub fn storage_entity(self) -> &'static str {
        match self {
            EventType::Login => "LoginEvent",
            EventType::Logout => "LogoutEvent",
            EventType::Report => "ReportEvent",
        }
    }

    pub fn topic(self) -> &'static str {
        match self {
            EventType::Login => sfwire::pubsub::LOGIN_TOPIC,
            EventType::Logout => sfwire::pubsub::LOGOUT_TOPIC,
            EventType::Report => sfwire::pubsub::REPORT_TOPIC,
        }
    }

    /// Accepts `Report`, `ReportEventStream`, `ReportEvent` or the topic name.
    pub fn parse(text: &str) -> Option<EventType> {
        let t = text.trim_start_matches("/event/");
        EventType::ALL.into_iter().find(|e| {
            [e.stream_entity(), e.storage_entity(), &format!("{e:?}")].iter().any(|n| n.eq_ignore_ascii_case(t))
        })
    }
}

/// Event Manager's switches and the Event Monitoring licence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSettings {
    pub licence: bool,
    pub streaming: BTreeMap<String, bool>,
    pub storing: BTreeMap<String, bool>,
}

impl Default for EventSettings {
    fn default() -> Self {
        let all_on = || EventType::ALL.iter().map(|e| (format!("{e:?}"), true)).collect();
        EventSettings { licence: true, streaming: all_on(), storing: all_on() }
    }
}

impl EventSettings {
    pub fn streaming(&self, e: EventType) -> bool {
        self.licence && self.streaming.get(&format!("{e:?}")).copied().unwrap_or(false)
    }
    pub fn storing(&self, e: EventType) -> bool {
        self.licence && self.storing.get(&format!("{e:?}")).copied().unwrap_or(false)
    }
    pub fn set(&mut self, e: EventType, streaming: Option<bool>, storing: Option<bool>) {
        if let Some(on) = streaming {
            self.streaming.insert(format!("{e:?}"), on);
        }
        if let Some(on) = storing {
            self.storing.insert(format!("{e:?}"), on);
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectedApp {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub callback_urls: Vec<String>,
    /// The X.509 certificate (PEM) uploaded for the JWT bearer flow ("Use digital
    /// signatures"): assertions must be signed with its key.
    #[serde(default)]
    pub certificate_pem: Option<String>,
    #[serde(default)]
    pub refresh_policy: RefreshPolicy,
    /// "Enforce IP restrictions": tokens are issued to, and used from, these ranges
    /// only (`None`: relaxed, as sfsim's app starts).
    #[serde(default)]
    pub ip_ranges: Option<Vec<IpRange>>,
}

/// A saved report that people run and export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub id: SfId,
    pub name: String,
    pub description: String,
    pub owner_id: SfId,
    pub format: String,
    pub scope: String,
    pub queried_entities: String,
    pub columns: Vec<String>,
}

pub struct Org {
    pub id: SfId,
    pub name: String,
    pub domain: String,
    pub pod: String,
    tables: HashMap<&'static str, Table>,
    pub report_events: Vec<StoredEvent<ReportEventStream>>,
    pub login_events: Vec<StoredEvent<LoginEventStream>>,
    pub passwords: HashMap<String, String>,
    pub app: ConnectedApp,
    pub service_user: SfId,
    pub reports: Vec<Report>,
    pub settings: EventSettings,
    /// Transaction security policies on report events, in the order they apply.
    pub policies: Vec<SecurityPolicy>,
    next_number: u64,
}

/// A transaction security policy on `ReportEvent`: an export of at least `min_rows`
/// rows (by one of `users`, or anyone when empty) is blocked, or notified about. The
/// event carries the policy's id and outcome, as Salesforce's do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityPolicy {
    #[serde(default = "SecurityPolicy::no_id")]
    pub id: SfId,
    pub name: String,
    #[serde(default)]
    pub min_rows: u64,
    #[serde(default)]
    pub users: Vec<SfId>,
    /// `Block` or `Notified` (the `PolicyOutcome` the event carries).
    pub outcome: String,
}

impl SecurityPolicy {
    fn no_id() -> SfId {
        SfId::generate(prefix::TRANSACTION_SECURITY_POLICY, "00", 0)
    }

    /// The outcomes a policy may have.
    pub const OUTCOMES: [&str; 2] = ["Block", "Notified"];

    pub fn applies(&self, user: Option<&str>, rows: u64) -> bool {
        rows >= self.min_rows
            && (self.users.is_empty()
                || user
                    .and_then(|u| SfId::parse(u).ok())
                    .is_some_and(|u| self.users.iter().any(|p| p.short() == u.short())))
    }
}

/// What `--users` and `--seed` ask for.
#[derive(Debug, Clone)]
pub struct OrgSpec {
    pub seed: u64,
    pub users: usize,
    pub callback_urls: Vec<String>,
}

impl Org {
    pub fn table(&self, object: &str) -> &Table {
        self.tables.get(object).unwrap_or_else(|| panic!("no table {object}"))
    }

    pub fn table_mut(&mut self, object: &str) -> &mut Table {
        self.tables.get_mut(object).unwrap_or_else(|| panic!("no table {object}"))
    }

    /// A fresh id for a new record of the object with key `prefix`.
    pub fn new_id(&mut self, key_prefix: &str) -> SfId {
        self.next_number += 1;
        SfId::generate(key_prefix, &self.pod, self.next_number)
    }

    fn empty(id_seed: &mut Rng, name: &str, domain: &str, app: ConnectedApp) -> Org {
        let pod = format!("{}{}", id_seed.token(b"0123456789", 1), id_seed.token(b"ABCDEFGHJKLMNPQRSTUVWXYZ", 1));
        let mut tables = HashMap::new();
        for schema in OBJECTS.iter().filter(|o| !o.is_big_object()) {
            tables.insert(schema.name, Table::new(schema));
        }
        let id = SfId::generate(prefix::ORGANIZATION, &pod, id_seed.below(1 << 40));
        Org {
            id,
            name: name.to_owned(),
            domain: domain.to_owned(),
            pod,
            tables,
            report_events: Vec::new(),
            login_events: Vec::new(),
            passwords: HashMap::new(),
            app,
            service_user: SfId::generate(prefix::USER, "00", 0),
            reports: Vec::new(),
            settings: EventSettings::default(),
            policies: Vec::new(),
            next_number: 1000,
        }
    }

    /// Generates an org deterministically from `spec`.
    pub fn generate(spec: &OrgSpec) -> Org {
        let mut rng = Rng::derive(spec.seed, "org");
        let (company, domain) = *rng.pick(names::COMPANIES);
        let app = ConnectedApp {
            name: "Tripline".into(),
            client_id: format!("3MVG9{}", rng.token(ALNUM, 80)),
            client_secret: rng.token(b"0123456789ABCDEF", 64),
            callback_urls: spec.callback_urls.clone(),
            certificate_pem: None,
            refresh_policy: RefreshPolicy::default(),
            ip_ranges: None,
        };
        let mut org = Org::empty(&mut rng, company, domain, app);
        let now = crate::clock::now_ms();
        let org_id = org.id.clone();
        org.table_mut("Organization").insert(&[
            ("Id", Value::id(&org_id)),
            ("Name", Value::text(company)),
            ("InstanceName", Value::text("SIM42")),
            ("OrganizationType", Value::text("Enterprise Edition")),
            ("IsSandbox", Value::Bool(false)),
            ("PrimaryContact", Value::text("IT Operations")),
            ("DefaultLocaleSidKey", Value::text("en_US")),
            ("TimeZoneSidKey", Value::text("America/Los_Angeles")),
            ("CreatedDate", Value::DateTime(now - 3 * 365 * 86_400_000)),
        ]);

        // Profiles, each owning a permission set: (name, export, api, admin-ish).
        let profiles: &[(&str, &[&str])] = &[
            (
                "System Administrator",
                &[
                    "ExportReport",
                    "ApiEnabled",
                    "ViewSetup",
                    "ViewAllUsers",
                    "CustomizeApplication",
                    "ViewEventLogFiles",
                    "ModifyAllData",
                ],
            ),
            ("Standard User", &["ApiEnabled"]),
            ("Sales Representative", &["ApiEnabled"]),
            ("Sales Manager", &["ExportReport", "ApiEnabled"]),
            ("Marketing User", &["ExportReport", "ApiEnabled"]),
            ("Support Agent", &["ApiEnabled"]),
            ("Finance Analyst", &["ExportReport", "ApiEnabled"]),
            ("Read Only", &[]),
            ("Tripline Monitoring", &["ApiEnabled", "ViewSetup", "ViewAllUsers", "CustomizeApplication"]),
        ];
        let mut profile_ids = HashMap::new();
        let mut profile_ps = HashMap::new();
        for (name, perms) in profiles {
            let profile_id = org.new_id(prefix::PROFILE);
            org.table_mut("Profile").insert(&[
                ("Id", Value::id(&profile_id)),
                ("Name", Value::text(*name)),
                ("UserType", Value::text("Standard")),
                ("Description", Value::text(format!("{name} profile"))),
            ]);
            let ps = org.add_permission_set(name, perms, Some(&profile_id), None);
            profile_ids.insert(*name, profile_id);
            profile_ps.insert(*name, ps);
        }
        let sets: &[(&str, &[&str])] = &[
            ("Report Exporter", &["ExportReport"]),
            ("Sales Operations Analyst", &["ExportReport", "ApiEnabled"]),
            ("Service Console User", &[]),
            ("Marketing Analytics", &["ExportReport"]),
            ("Audit Read Only", &["ViewSetup"]),
            ("Data Loader Access", &["ApiEnabled"]),
        ];
        let mut set_ids = HashMap::new();
        for (name, perms) in sets {
            let id = org.add_permission_set(name, perms, None, None);
            set_ids.insert(*name, id);
        }
        let psgs: &[(&str, &[&str])] = &[
            ("Revenue Operations", &["Sales Operations Analyst", "Service Console User"]),
            ("Support Leads", &["Service Console User", "Audit Read Only"]),
        ];
        let mut psg_aggregates = Vec::new();
        for (name, components) in psgs {
            let psg_id = org.new_id(prefix::PERMISSION_SET_GROUP);
            let dev = developer_name(name);
            org.table_mut("PermissionSetGroup").insert(&[
                ("Id", Value::id(&psg_id)),
                ("DeveloperName", Value::text(&dev)),
                ("MasterLabel", Value::text(*name)),
                ("Status", Value::text("Updated")),
            ]);
            for component in *components {
                let component_id = org.new_id("0PH");
                org.table_mut("PermissionSetGroupComponent").insert(&[
                    ("Id", Value::id(&component_id)),
                    ("PermissionSetGroupId", Value::id(&psg_id)),
                    ("PermissionSetId", Value::id(&set_ids[component])),
                ]);
            }
            let aggregate = org.add_permission_set(&dev, &[], None, Some(&psg_id));
            psg_aggregates.push((psg_id, aggregate));
        }
        org.recompute_permission_set_groups();

        // Groups: regional teams nested under "All Sales", and a deliberate cycle.
        let group_names = [
            "AMER Sales",
            "EMEA Sales",
            "APAC Sales",
            "Sales Leadership",
            "All Sales",
            "Regional Managers",
            "Finance Team",
            "Marketing Team",
            "Departing Employees",
            "Support Tier 2",
        ];
        let mut groups = HashMap::new();
        for name in group_names {
            groups.insert(name, org.add_group(name, "Regular"));
        }
        org.add_group("VP Sales", "Role");
        org.add_group("Support Queue", "Queue");
        for (parent, child) in [
            ("All Sales", "AMER Sales"),
            ("All Sales", "EMEA Sales"),
            ("All Sales", "APAC Sales"),
            ("All Sales", "Sales Leadership"),
            ("Sales Leadership", "Regional Managers"),
            ("Regional Managers", "Sales Leadership"),
        ] {
            org.add_group_member(&groups[parent], &groups[child]);
        }

        // People.
        let mut used = HashSet::new();
        let mut person = 0usize;
        while person < spec.users {
            let first = *rng.pick(names::FIRST_NAMES);
            let last = *rng.pick(names::LAST_NAMES);
            let (department, profile, titles) = *rng.pick(names::DEPARTMENTS);
            let local = format!("{}.{}", ascii_slug(first), ascii_slug(last));
            let mut email = format!("{local}@{domain}");
            let mut n = 2;
            while used.contains(&email) {
                email = format!("{local}{n}@{domain}");
                n += 1;
            }
            used.insert(email.clone());
            // Some orgs give usernames a suffix that differs from the email.
            let username = if rng.chance(0.15) { format!("{email}.prod") } else { email.clone() };
            let active = !rng.chance(0.04);
            let frozen = active && rng.chance(0.02);
            let user_id = org.add_user(UserFields {
                first,
                last,
                username: &username,
                email: &email,
                profile_id: &profile_ids[profile],
                department,
                title: rng.pick::<&str>(titles),
                active,
                frozen,
                created: now - (rng.below(900) as i64 + 30) * 86_400_000,
            });
            let password = rng.token(ALNUM, 12);
            org.passwords.insert(user_id.to_string(), password);
            org.assign(&user_id, &profile_ps[profile], None, None);
            if rng.chance(0.2) {
                let set = rng.pick(sets).0;
                // A third of extra assignments are temporary; half of those have lapsed.
                let expiry = rng
                    .chance(0.33)
                    .then(|| if rng.chance(0.5) { now - 86_400_000 * 3 } else { now + 86_400_000 * 30 });
                org.assign(&user_id, &set_ids[set], None, expiry);
            }
            if rng.chance(0.08) {
                let (psg, aggregate) = rng.pick(&psg_aggregates).clone();
                org.assign(&user_id, &aggregate, Some(&psg), None);
            }
            let region = *rng.pick(names::REGIONS);
            match (department, profile) {
                ("Sales", "Sales Manager") => {
                    org.add_group_member(&groups["Sales Leadership"], &user_id);
                    if rng.chance(0.5) {
                        org.add_group_member(&groups["Regional Managers"], &user_id);
                    }
                }
                ("Sales", _) => {
                    org.add_group_member(&groups[format!("{region} Sales").as_str()], &user_id);
                }
                ("Finance", _) => {
                    org.add_group_member(&groups["Finance Team"], &user_id);
                }
                ("Marketing", _) => {
                    org.add_group_member(&groups["Marketing Team"], &user_id);
                }
                ("Customer Support", _) if rng.chance(0.3) => {
                    org.add_group_member(&groups["Support Tier 2"], &user_id);
                }
                _ => {}
            }
            if rng.chance(0.02) {
                org.add_group_member(&groups["Departing Employees"], &user_id);
            }
            person += 1;
        }

        // The service account Tripline signs in as.
        let service = org.add_user(UserFields {
            first: "Tripline",
            last: "Monitor",
            username: &format!("tripline.monitor@{domain}"),
            email: &format!("it-security@{domain}"),
            profile_id: &profile_ids["Tripline Monitoring"],
            department: "IT",
            title: "Integration User",
            active: true,
            frozen: false,
            created: now - 86_400_000,
        });
        org.passwords.insert(service.to_string(), format!("Tl-{}", rng.token(ALNUM, 14)));
        org.assign(&service, &profile_ps["Tripline Monitoring"], None, None);
        org.service_user = service;

        // Reports, owned by managers and admins.
        let owners: Vec<SfId> = org.user_ids().into_iter().take(40).collect();
        for (name, description, entities) in names::REPORTS {
            let id = org.new_id(prefix::REPORT);
            let columns = entities
                .split(',')
                .flat_map(|e| names::COLUMNS.iter().find(|(n, _)| n == &e).map(|(_, c)| c.iter()))
                .flatten()
                .map(|c| (*c).to_owned())
                .collect();
            org.reports.push(Report {
                id,
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                owner_id: rng.pick(&owners).clone(),
                format: (*rng.pick(&["Tabular", "Summary", "Matrix", "Tabular"])).to_owned(),
                scope: (*rng.pick(&["organization", "user", "team"])).to_owned(),
                queried_entities: (*entities).to_owned(),
                columns,
            });
        }
        org
    }

    fn add_permission_set(&mut self, name: &str, perms: &[&str], profile: Option<&SfId>, psg: Option<&SfId>) -> SfId {
        let id = self.new_id(prefix::PERMISSION_SET);
        let kind = match (profile, psg) {
            (Some(_), _) => "Profile",
            (_, Some(_)) => "Group",
            _ => "Regular",
        };
        let mut values = vec![
            ("Id", Value::id(&id)),
            ("Name", Value::text(developer_name(name))),
            ("Label", Value::text(name)),
            ("Type", Value::text(kind)),
            ("IsOwnedByProfile", Value::Bool(profile.is_some())),
            ("ProfileId", profile.map_or(Value::Null, Value::id)),
            ("PermissionSetGroupId", psg.map_or(Value::Null, Value::id)),
        ];
        let perm_fields: Vec<String> = object_schema("PermissionSet")
            .map(|s| s.fields.iter().filter(|f| f.name.starts_with("Permissions")).map(|f| f.name.to_owned()).collect())
            .unwrap_or_default();
        for field in &perm_fields {
            let on = perms.iter().any(|p| field == &format!("Permissions{p}"));
            values.push((field.as_str(), Value::Bool(on)));
        }
        self.table_mut("PermissionSet").insert(&values);
        id
    }

    /// A permission-set group's aggregate permission set grants what any component grants.
    pub fn recompute_permission_set_groups(&mut self) {
        let components: Vec<(String, String)> = {
            let t = self.table("PermissionSetGroupComponent");
            t.rows()
                .map(|r| {
                    let s = |f| t.value(r, f).as_str().unwrap_or_default().to_owned();
                    (s("PermissionSetGroupId"), s("PermissionSetId"))
                })
                .collect()
        };
        let sets = self.table("PermissionSet");
        let schema = sets.schema;
        let perm_indexes: Vec<usize> =
            (0..schema.fields.len()).filter(|&i| schema.fields[i].name.starts_with("Permissions")).collect();
        let mut updates: Vec<(String, usize, bool)> = Vec::new();
        for aggregate in sets.rows() {
            let Some(psg) = sets.value(aggregate, "PermissionSetGroupId").as_str() else { continue };
            let id = sets.value(aggregate, "Id").as_str().unwrap_or_default().to_owned();
            for &i in &perm_indexes {
                let on = components
                    .iter()
                    .filter(|(g, _)| g == psg)
                    .filter_map(|(_, ps)| sets.get(ps))
                    .any(|ps| ps[i] == Value::Bool(true));
                updates.push((id.clone(), i, on));
            }
        }
        let sets = self.table_mut("PermissionSet");
        for (id, i, on) in updates {
            if let Some(r) = sets.get_mut(&id) {
                r[i] = Value::Bool(on);
            }
        }
    }

    fn add_group(&mut self, name: &str, kind: &str) -> SfId {
        let id = self.new_id(prefix::GROUP);
        self.table_mut("Group").insert(&[
            ("Id", Value::id(&id)),
            ("Name", Value::text(name)),
            ("DeveloperName", Value::text(developer_name(name))),
            ("Type", Value::text(kind)),
            ("DoesIncludeBosses", Value::Bool(false)),
        ]);
        id
    }

    pub fn add_group_member(&mut self, group: &SfId, member: &SfId) -> SfId {
        let id = self.new_id(prefix::GROUP_MEMBER);
        self.table_mut("GroupMember").insert(&[
            ("Id", Value::id(&id)),
            ("GroupId", Value::id(group)),
            ("UserOrGroupId", Value::id(member)),
        ]);
        id
    }

    /// Removes `member` from `group`; false if it was not a direct member.
    pub fn remove_group_member(&mut self, group: &SfId, member: &SfId) -> bool {
        let ids: Vec<String> = {
            let t = self.table("GroupMember");
            t.rows()
                .filter(|r| same_id(t.value(r, "GroupId"), group) && same_id(t.value(r, "UserOrGroupId"), member))
                .filter_map(|r| t.value(r, "Id").as_str().map(str::to_owned))
                .collect()
        };
        let t = self.table_mut("GroupMember");
        ids.iter().filter(|id| t.delete(id)).count() > 0
    }

    fn add_user(&mut self, u: UserFields<'_>) -> SfId {
        let id = self.new_id(prefix::USER);
        let alias: String = format!("{}{}", ascii_slug(u.first).chars().next().unwrap_or('x'), ascii_slug(u.last))
            .chars()
            .take(8)
            .collect();
        self.table_mut("User").insert(&[
            ("Id", Value::id(&id)),
            ("Username", Value::text(u.username)),
            ("Email", Value::text(u.email)),
            ("Name", Value::text(format!("{} {}", u.first, u.last))),
            ("FirstName", Value::text(u.first)),
            ("LastName", Value::text(u.last)),
            ("Alias", Value::text(alias)),
            ("IsActive", Value::Bool(u.active)),
            ("UserType", Value::text("Standard")),
            ("ProfileId", Value::id(u.profile_id)),
            ("Department", Value::text(u.department)),
            ("Title", Value::text(u.title)),
            ("TimeZoneSidKey", Value::text("America/Los_Angeles")),
            ("CreatedDate", Value::DateTime(u.created)),
        ]);
        let login_id = self.new_id("060");
        self.table_mut("UserLogin").insert(&[
            ("Id", Value::id(&login_id)),
            ("UserId", Value::id(&id)),
            ("IsFrozen", Value::Bool(u.frozen)),
            ("IsPasswordLocked", Value::Bool(false)),
        ]);
        id
    }

    /// Assigns a permission set (or, with `psg`, a permission-set group through its
    /// aggregate permission set) to a user.
    pub fn assign(&mut self, user: &SfId, permission_set: &SfId, psg: Option<&SfId>, expires: Option<i64>) -> SfId {
        let id = self.new_id(prefix::PERMISSION_SET_ASSIGNMENT);
        let active = self.user_active(user);
        self.table_mut("PermissionSetAssignment").insert(&[
            ("Id", Value::id(&id)),
            ("AssigneeId", Value::id(user)),
            ("PermissionSetId", Value::id(permission_set)),
            ("PermissionSetGroupId", psg.map_or(Value::Null, Value::id)),
            ("IsActive", Value::Bool(active)),
            ("ExpirationDate", expires.map_or(Value::Null, Value::DateTime)),
        ]);
        id
    }

    pub fn user_ids(&self) -> Vec<SfId> {
        let t = self.table("User");
        t.rows().filter_map(|r| t.value(r, "Id").as_str().and_then(|s| SfId::parse(s).ok())).collect()
    }

    pub fn user_field(&self, user: &SfId, field: &str) -> Value {
        let t = self.table("User");
        t.get(user.as_str()).map_or(Value::Null, |r| t.value(r, field).clone())
    }

    pub fn username(&self, user: &SfId) -> String {
        self.user_field(user, "Username").as_str().unwrap_or_default().to_owned()
    }

    pub fn find_user_by_username(&self, username: &str) -> Option<SfId> {
        let t = self.table("User");
        t.rows()
            .find(|r| t.value(r, "Username").as_str().is_some_and(|u| u.eq_ignore_ascii_case(username)))
            .and_then(|r| t.value(r, "Id").as_str().and_then(|s| SfId::parse(s).ok()))
    }

    pub fn user_active(&self, user: &SfId) -> bool {
        self.user_field(user, "IsActive") == Value::Bool(true)
    }

    pub fn user_frozen(&self, user: &SfId) -> bool {
        let t = self.table("UserLogin");
        t.rows()
            .find(|r| same_id(t.value(r, "UserId"), user))
            .is_some_and(|r| t.value(r, "IsFrozen") == &Value::Bool(true))
    }

    /// Active and not frozen: may sign in and use tokens.
    /// Whether a client at `ip` may get or use the connected app's tokens.
    pub fn app_ip_allowed(&self, ip: std::net::IpAddr) -> bool {
        crate::sessions::ip_allowed(self.app.ip_ranges.as_deref(), ip)
    }

    pub fn user_can_sign_in(&self, user: &SfId) -> bool {
        self.user_active(user) && !self.user_frozen(user)
    }

    pub fn set_user_active(&mut self, user: &SfId, active: bool) -> bool {
        if !self.table_mut("User").set(user.as_str(), "IsActive", Value::Bool(active)) {
            return false;
        }
        // PermissionSetAssignment.IsActive mirrors the assignee's state.
        let t = self.table_mut("PermissionSetAssignment");
        let ids: Vec<String> = t
            .rows()
            .filter(|r| same_id(t.value(r, "AssigneeId"), user))
            .filter_map(|r| t.value(r, "Id").as_str().map(str::to_owned))
            .collect();
        for id in ids {
            t.set(&id, "IsActive", Value::Bool(active));
        }
        true
    }

    pub fn set_user_frozen(&mut self, user: &SfId, frozen: bool) -> bool {
        let t = self.table_mut("UserLogin");
        let id = t
            .rows()
            .find(|r| same_id(t.value(r, "UserId"), user))
            .and_then(|r| t.value(r, "Id").as_str().map(str::to_owned));
        id.is_some_and(|id| t.set(&id, "IsFrozen", Value::Bool(frozen)))
    }

    /// May the user use the APIs (REST, SOAP, Metadata, Pub/Sub)? Salesforce asks for
    /// API Enabled in the profile or a permission set.
    pub fn user_can_use_api(&self, user: &SfId, now_ms: i64) -> bool {
        self.user_has_permission(user, "PermissionsApiEnabled", now_ms)
    }

    /// Does the user hold a permission through any unexpired assignment?
    pub fn user_has_permission(&self, user: &SfId, permission: &str, now_ms: i64) -> bool {
        let assignments = self.table("PermissionSetAssignment");
        let sets = self.table("PermissionSet");
        assignments
            .rows()
            .filter(|r| same_id(assignments.value(r, "AssigneeId"), user))
            .filter(|r| match assignments.value(r, "ExpirationDate") {
                Value::DateTime(t) => *t > now_ms,
                _ => true,
            })
            .filter_map(|r| assignments.value(r, "PermissionSetId").as_str())
            .filter_map(|ps| sets.get(ps))
            .any(|ps| sets.value(ps, permission) == &Value::Bool(true))
    }

    pub fn report(&self, id: &str) -> Option<&Report> {
        self.reports.iter().find(|r| r.id.short() == record_key(id))
    }

    pub fn store_report_event(&mut self, event: Arc<ReportEventStream>) {
        let id = self.new_id(prefix::REPORT_EVENT);
        self.report_events.push(StoredEvent { id, event });
    }

    pub fn store_login_event(&mut self, event: Arc<LoginEventStream>) {
        let id = self.new_id(prefix::LOGIN_EVENT);
        self.login_events.push(StoredEvent { id, event });
    }

    /// Writes the org (records, credentials, app, reports, settings) as JSON.
    pub fn to_file(&self) -> OrgFile {
        let mut records = BTreeMap::new();
        for (name, table) in &self.tables {
            let rows = table
                .rows()
                .map(|r| {
                    table
                        .schema
                        .fields
                        .iter()
                        .zip(r)
                        .filter(|(_, v)| **v != Value::Null)
                        .map(|(f, v)| (f.name.to_owned(), v.to_json()))
                        .collect()
                })
                .collect();
            records.insert((*name).to_owned(), rows);
        }
        OrgFile {
            organization_id: self.id.clone(),
            name: self.name.clone(),
            domain: self.domain.clone(),
            pod: self.pod.clone(),
            service_user: self.service_user.clone(),
            connected_app: self.app.clone(),
            passwords: self.passwords.clone().into_iter().collect(),
            reports: self.reports.clone(),
            settings: self.settings.clone(),
            records,
        }
    }

    /// Loads an org saved by [`Org::to_file`] (or written by hand in that shape).
    pub fn from_file(file: OrgFile) -> anyhow::Result<Org> {
        let mut org = Org::empty(&mut Rng::new(0), &file.name, &file.domain, file.connected_app);
        org.id = file.organization_id;
        org.pod = file.pod;
        org.service_user = file.service_user;
        org.passwords = file.passwords.into_iter().collect();
        org.reports = file.reports;
        org.settings = file.settings;
        for (object, rows) in file.records {
            let schema = object_schema(&object).filter(|s| !s.is_big_object());
            let Some(schema) = schema else { bail!("unknown object {object:?} in org file") };
            for (n, row) in rows.iter().enumerate() {
                let mut values = Vec::new();
                for (field, json) in row {
                    let f = schema
                        .field_index(field)
                        .map(|i| &schema.fields[i])
                        .with_context(|| format!("{object} record {n}: unknown field {field:?}"))?;
                    let value = json_to_value(json, f.ty)
                        .with_context(|| format!("{object} record {n}: bad value for {field}"))?;
                    values.push((f.name, value));
                }
                if !values.iter().any(|(f, v)| *f == "Id" && v.as_str().is_some_and(|s| SfId::parse(s).is_ok())) {
                    bail!("{object} record {n}: missing or invalid Id");
                }
                org.table_mut(schema.name).insert(&values);
            }
        }
        if org.table("User").get(org.service_user.as_str()).is_none() {
            bail!("the service user {} is not a User in the file", org.service_user);
        }
        org.next_number = 1_000_000;
        Ok(org)
    }
}

/// The JSON form of an org (`--org-file`, `--dump-org`).
#[derive(Debug, Serialize, Deserialize)]
pub struct OrgFile {
    pub organization_id: SfId,
    pub name: String,
    pub domain: String,
    pub pod: String,
    pub service_user: SfId,
    pub connected_app: ConnectedApp,
    pub passwords: BTreeMap<String, String>,
    pub reports: Vec<Report>,
    pub settings: EventSettings,
    pub records: BTreeMap<String, Vec<BTreeMap<String, serde_json::Value>>>,
}

fn json_to_value(json: &serde_json::Value, ty: FieldType) -> anyhow::Result<Value> {
    use serde_json::Value as J;
    Ok(match (json, ty) {
        (J::Null, _) => Value::Null,
        (J::Bool(b), FieldType::Boolean) => Value::Bool(*b),
        (J::Number(n), FieldType::Int) => Value::Int(n.as_i64().context("not an integer")?),
        (J::Number(n), FieldType::Double) => Value::Double(n.as_f64().context("not a number")?),
        (J::String(s), FieldType::DateTime) => {
            Value::DateTime(crate::model::parse_datetime(s).context("not a datetime")?)
        }
        (J::String(s), FieldType::Id | FieldType::Reference) => Value::id(&SfId::parse(s).map_err(anyhow::Error::msg)?),
        (J::String(s), FieldType::String) => Value::text(s.as_str()),
        (other, ty) => bail!("{other} is not a {ty:?}"),
    })
}

struct UserFields<'a> {
    first: &'a str,
    last: &'a str,
    username: &'a str,
    email: &'a str,
    profile_id: &'a SfId,
    department: &'a str,
    title: &'a str,
    active: bool,
    frozen: bool,
    created: i64,
}

/// Does an id-valued field name `id` (comparing 15-character forms)?
pub fn same_id(value: &Value, id: &SfId) -> bool {
    value.as_str().map(record_key) == Some(id.short())
}

/// `Sales Leadership` → `Sales_Leadership`.
pub fn developer_name(label: &str) -> String {
    let mut out: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    out.trim_matches('_').to_owned()
}

/// Lower-case ASCII for usernames: `Chloé O'Brien` → `chloe`, `obrien`.
fn ascii_slug(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'é' | 'è' | 'ë' => Some('e'),
            'á' | 'à' | 'ã' => Some('a'),
            'ü' | 'ú' => Some('u'),
            'í' => Some('i'),
            'ó' | 'ö' => Some('o'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}
