//! Who is monitored: users who actively hold "Export Reports" (through a profile,
//! permission set or permission-set group, not expired) and are active, intersected
//! with the connection's choice: all of them, listed users, or members of listed
//! public groups (nested groups expanded, cycles tolerated).

use std::collections::{HashMap, HashSet, VecDeque};

use salesforce::api::SalesforceApi;
use serde_json::Value;
use sfwire::id::{SfId, prefix};
use sfwire::soql::quote;

use crate::connection::ScopeMode;
use crate::people::SalesforceUser;

fn text(record: &Value, field: &str) -> Option<String> {
    record.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn id(record: &Value, field: &str) -> Option<SfId> {
    SfId::parse(record.get(field)?.as_str()?).ok()
}

/// The SOQL datetime for now, for "not expired".
fn soql_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Active users holding Export Reports through an unexpired assignment.
pub async fn export_holders(api: &SalesforceApi) -> Result<Vec<SalesforceUser>, salesforce::Error> {
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
            Some(SalesforceUser {
                user_id: id(r, "Id")?,
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
) -> Result<(HashSet<SfId>, Vec<String>), salesforce::Error> {
    let groups = api.query("SELECT Id, Name, DeveloperName FROM Group WHERE Type = 'Regular'").await?;
    let mut ids = HashSet::new();
    let mut unknown = Vec::new();
    for entry in entries {
        let e = entry.trim();
        let named = SfId::parse(e).ok();
        let found = groups.iter().find(|g| {
            (named.is_some() && id(g, "Id") == named)
                || text(g, "Name").is_some_and(|n| n.eq_ignore_ascii_case(e))
                || text(g, "DeveloperName").is_some_and(|n| n.eq_ignore_ascii_case(e))
        });
        match found.and_then(|g| id(g, "Id")) {
            Some(id) => {
                ids.insert(id);
            }
            None => unknown.push(entry.clone()),
        }
    }
    Ok((ids, unknown))
}

/// Every user in the groups, through nested groups, each group visited once.
async fn expand_groups(api: &SalesforceApi, roots: &HashSet<SfId>) -> Result<HashSet<SfId>, salesforce::Error> {
    let members = api.query("SELECT GroupId, UserOrGroupId FROM GroupMember").await?;
    let mut children: HashMap<SfId, Vec<SfId>> = HashMap::new();
    for m in &members {
        if let (Some(g), Some(member)) = (id(m, "GroupId"), id(m, "UserOrGroupId")) {
            children.entry(g).or_default().push(member);
        }
    }
    let mut users = HashSet::new();
    let mut visited = HashSet::new();
    let mut queue: VecDeque<SfId> = roots.iter().cloned().collect();
    while let Some(group) = queue.pop_front() {
        if !visited.insert(group.clone()) {
            continue; // a cycle, or a group reached twice
        }
        for member in children.get(&group).into_iter().flatten() {
            match member.key_prefix() {
                prefix::GROUP => queue.push_back(member.clone()),
                prefix::USER => {
                    users.insert(member.clone());
                }
                _ => {} // roles and territories are not people
            }
        }
    }
    Ok(users)
}

/// The outcome of a scan: who is monitored, and configured entries that matched nobody.
#[derive(Debug, Default)]
pub(crate) struct ScopeScan {
    pub users: Vec<SalesforceUser>,
    pub unmatched: Vec<String>,
}

/// Scans the org for the users this connection monitors.
pub(crate) async fn scan(api: &SalesforceApi, mode: &ScopeMode) -> Result<ScopeScan, salesforce::Error> {
    let holders = export_holders(api).await?;
    match mode {
        ScopeMode::All => Ok(ScopeScan { users: holders, unmatched: Vec::new() }),
        ScopeMode::Users(entries) => {
            let wanted: Vec<String> = entries.iter().map(|e| e.trim().to_lowercase()).collect();
            let matches = |u: &SalesforceUser, w: &str| {
                u.username.to_lowercase() == w || u.email.as_deref().is_some_and(|e| e.to_lowercase() == w)
            };
            let users: Vec<SalesforceUser> =
                holders.into_iter().filter(|u| wanted.iter().any(|w| matches(u, w))).collect();
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
            let users = holders.into_iter().filter(|u| members.contains(&u.user_id)).collect();
            Ok(ScopeScan { users, unmatched })
        }
    }
}

/// Entries of a Users or Groups scope that name nobody in the org (whatever their
/// permissions): these are refused at authorization.
pub(crate) async fn unknown_entries(api: &SalesforceApi, mode: &ScopeMode) -> Result<Vec<String>, salesforce::Error> {
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
