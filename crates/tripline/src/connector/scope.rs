//! Who is monitored: users who actively hold "Export Reports" (through a profile,
//! permission set or permission-set group, not expired) and are active, intersected
//! with the connection's choice: all of them, listed users, or members of listed
//! public groups (nested groups expanded, cycles tolerated).

use std::collections::{HashMap, HashSet, VecDeque};

use salesforce::api::SalesforceApi;
use serde_json::Value;
use sfwire::soql::quote;

use crate::store::UserInfo;

/// The scope a connection was configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeMode {
    All,
    /// Usernames or emails.
    Users(Vec<String>),
    /// Group names, developer names or ids.
    Groups(Vec<String>),
}

impl ScopeMode {
    pub fn from_parts(mode: &str, entries: &[String]) -> ScopeMode {
        match mode {
            "users" => ScopeMode::Users(entries.to_vec()),
            "groups" => ScopeMode::Groups(entries.to_vec()),
            _ => ScopeMode::All,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ScopeMode::All => "all",
            ScopeMode::Users(_) => "users",
            ScopeMode::Groups(_) => "groups",
        }
    }
}

fn text(record: &Value, field: &str) -> Option<String> {
    record.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// The SOQL datetime for now, for "not expired".
fn soql_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Active users holding Export Reports through an unexpired assignment.
pub async fn export_holders(api: &SalesforceApi) -> Result<Vec<UserInfo>, salesforce::Error> {
    let soql = format!(
        "SELECT Id, Username, Email, Name FROM User WHERE IsActive = true AND Id IN \
         (SELECT AssigneeId FROM PermissionSetAssignment WHERE PermissionSet.PermissionsExportReport = true \
         AND (ExpirationDate = null OR ExpirationDate > {}))",
        soql_now()
    );
    let records = api.query(&soql).await?;
    Ok(records
        .iter()
        .filter_map(|r| {
            Some(UserInfo {
                user_id: text(r, "Id")?,
                username: text(r, "Username")?,
                email: text(r, "Email"),
                name: text(r, "Name"),
            })
        })
        .collect())
}

/// Group ids named by the entries (name, developer name or id), and entries that name none.
async fn resolve_groups(
    api: &SalesforceApi,
    entries: &[String],
) -> Result<(HashSet<String>, Vec<String>), salesforce::Error> {
    let groups = api.query("SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Regular'").await?;
    let mut ids = HashSet::new();
    let mut unknown = Vec::new();
    for entry in entries {
        let e = entry.trim();
        let found = groups.iter().find(|g| {
            let id = text(g, "Id").unwrap_or_default();
            id == e
                || (e.len() == 15 && id.starts_with(e))
                || text(g, "Name").is_some_and(|n| n.eq_ignore_ascii_case(e))
                || text(g, "DeveloperName").is_some_and(|n| n.eq_ignore_ascii_case(e))
        });
        match found.and_then(|g| text(g, "Id")) {
            Some(id) => {
                ids.insert(id);
            }
            None => unknown.push(entry.clone()),
        }
    }
    Ok((ids, unknown))
}

/// Every user in the groups, through nested groups, each group visited once.
async fn expand_groups(api: &SalesforceApi, roots: &HashSet<String>) -> Result<HashSet<String>, salesforce::Error> {
    let members = api.query("SELECT GroupId, UserOrGroupId FROM GroupMember").await?;
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for m in &members {
        if let (Some(g), Some(member)) = (text(m, "GroupId"), text(m, "UserOrGroupId")) {
            children.entry(g[..15.min(g.len())].to_owned()).or_default().push(member);
        }
    }
    let mut users = HashSet::new();
    let mut visited = HashSet::new();
    let mut queue: VecDeque<String> = roots.iter().cloned().collect();
    while let Some(group) = queue.pop_front() {
        let key = group[..15.min(group.len())].to_owned();
        if !visited.insert(key.clone()) {
            continue; // a cycle, or a group reached twice
        }
        for member in children.get(&key).into_iter().flatten() {
            if member.starts_with("00G") {
                queue.push_back(member.clone());
            } else if member.starts_with("005") {
                users.insert(member[..15.min(member.len())].to_owned());
            }
        }
    }
    Ok(users)
}

/// The outcome of a scan: who is monitored, and configured entries that matched nobody.
#[derive(Debug, Default)]
pub struct ScopeScan {
    pub users: Vec<UserInfo>,
    pub unmatched: Vec<String>,
}

/// Scans the org for the users this connection monitors.
pub async fn scan(api: &SalesforceApi, mode: &ScopeMode) -> Result<ScopeScan, salesforce::Error> {
    let holders = export_holders(api).await?;
    match mode {
        ScopeMode::All => Ok(ScopeScan { users: holders, unmatched: Vec::new() }),
        ScopeMode::Users(entries) => {
            let wanted: Vec<String> = entries.iter().map(|e| e.trim().to_lowercase()).collect();
            let matches = |u: &UserInfo, w: &str| {
                u.username.to_lowercase() == w || u.email.as_deref().is_some_and(|e| e.to_lowercase() == w)
            };
            let users: Vec<UserInfo> = holders.into_iter().filter(|u| wanted.iter().any(|w| matches(u, w))).collect();
            let unmatched = entries
                .iter()
                .filter(|e| !users.iter().any(|u| matches(u, &e.trim().to_lowercase())))
                .cloned()
                .collect();
            Ok(ScopeScan { users, unmatched })
        }
        ScopeMode::Groups(entries) => {
            let (roots, unmatched) = resolve_groups(api, entries).await?;
            let members = expand_groups(api, &roots).await?;
            let users =
                holders.into_iter().filter(|u| members.contains(&u.user_id[..15.min(u.user_id.len())])).collect();
            Ok(ScopeScan { users, unmatched })
        }
    }
}

/// Looks a user up by id (attribution of exports from sessions we never saw).
pub async fn lookup_user(api: &SalesforceApi, user_id: &str) -> Result<Option<UserInfo>, salesforce::Error> {
    let soql = format!("SELECT Id, Username, Email, Name FROM User WHERE Id = {}", quote(user_id));
    let records = api.query(&soql).await?;
    Ok(records.first().and_then(|r| {
        Some(UserInfo {
            user_id: text(r, "Id")?,
            username: text(r, "Username")?,
            email: text(r, "Email"),
            name: text(r, "Name"),
        })
    }))
}

/// Entries of a Users or Groups scope that name nobody in the org (whatever their
/// permissions): these are refused at authorization.
pub async fn unknown_entries(api: &SalesforceApi, mode: &ScopeMode) -> Result<Vec<String>, salesforce::Error> {
    match mode {
        ScopeMode::All => Ok(Vec::new()),
        ScopeMode::Groups(entries) => Ok(resolve_groups(api, entries).await?.1),
        ScopeMode::Users(entries) => {
            let mut known: HashSet<String> = HashSet::new();
            for chunk in entries.chunks(100) {
                let list = chunk.iter().map(|e| quote(e.trim())).collect::<Vec<_>>().join(", ");
                let soql = format!("SELECT Username, Email FROM User WHERE Username IN ({list}) OR Email IN ({list})");
                for r in api.query(&soql).await? {
                    for field in ["Username", "Email"] {
                        if let Some(v) = text(&r, field) {
                            known.insert(v.to_lowercase());
                        }
                    }
                }
            }
            Ok(entries.iter().filter(|e| !known.contains(&e.trim().to_lowercase())).cloned().collect())
        }
    }
}
