//! The org's data as Salesforce objects: typed field values, object descriptions
//! (fields and relationships) and tables of records. SOQL runs over these.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sfwire::avro::AvroRecord;
use sfwire::events::{EventRecord, FieldValue, LoginEventStream, ReportEventStream};
use sfwire::id::{SfId, prefix, record_key};

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(String),
    /// Milliseconds since the epoch, UTC.
    DateTime(i64),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    pub fn id(id: &SfId) -> Value {
        Value::Text(id.as_str().to_owned())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as Salesforce's REST API writes it in JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Double(d) => serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, Into::into),
            Value::Text(s) => s.as_str().into(),
            Value::DateTime(ms) => format_datetime(*ms).into(),
        }
    }
}

/// Salesforce's REST datetime form: `2026-11-26T20:58:31.000+0000`.
pub fn format_datetime(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
        .unwrap_or_default()
}

/// Midnight UTC of a day, epoch ms.
pub fn day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t).timestamp_millis()).unwrap_or_default()
}

/// Parses SOQL and REST datetimes: `2026-01-02T03:04:05Z`, with optional fraction and a
/// `Z`, `+hh:mm` or `+hhmm` offset.
pub fn parse_datetime(text: &str) -> Option<i64> {
    if !text.contains('T') {
        return None;
    }
    let normalized = match text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        Some(rest) => format!("{rest}+00:00"),
        None => text.to_owned(),
    };
    DateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f%z").ok().map(|d| d.timestamp_millis())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Reference,
    String,
    Boolean,
    Int,
    Double,
    DateTime,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
}

/// A lookup from one object to another: `PermissionSet` on `PermissionSetAssignment`
/// follows `PermissionSetId`.
#[derive(Debug)]
pub struct Relationship {
    pub name: &'static str,
    pub id_field: &'static str,
    pub target: &'static str,
}

/// Which rows back an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Table,
    ReportEvents,
    LoginEvents,
}

#[derive(Debug)]
pub struct ObjectSchema {
    pub name: &'static str,
    pub key_prefix: &'static str,
    pub fields: Vec<Field>,
    pub relationships: Vec<Relationship>,
    pub storage: Storage,
}

impl ObjectSchema {
    /// The index of a field, by case-insensitive name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn relationship(&self, name: &str) -> Option<&Relationship> {
        self.relationships.iter().find(|r| r.name.eq_ignore_ascii_case(name))
    }

    pub fn is_big_object(&self) -> bool {
        self.storage != Storage::Table
    }
}

fn object(
    name: &'static str,
    key_prefix: &'static str,
    fields: &[(&'static str, FieldType)],
    relationships: &[(&'static str, &'static str, &'static str)],
) -> ObjectSchema {
    ObjectSchema {
        name,
        key_prefix,
        fields: fields.iter().map(|&(name, ty)| Field { name, ty }).collect(),
        relationships: relationships
            .iter()
            .map(|&(name, id_field, target)| Relationship { name, id_field, target })
            .collect(),
        storage: Storage::Table,
    }
}

/// The type of a field of a stored event object (same names as the stream).
fn event_field_type(name: &str) -> FieldType {
    match name {
        "Id" => FieldType::Id,
        "EventDate" | "CreatedDate" => FieldType::DateTime,
        "RowsProcessed" | "EvaluationTime" | "LoginLatitude" | "LoginLongitude" => FieldType::Double,
        "NumberOfColumns" | "Sequence" => FieldType::Int,
        "IsScheduled" => FieldType::Boolean,
        "UserId" | "CreatedById" | "ReportId" | "OwnerId" | "DashboardId" => FieldType::Reference,
        _ => FieldType::String,
    }
}

fn event_object(
    name: &'static str,
    key_prefix: &'static str,
    fields: &'static [&'static str],
    storage: Storage,
) -> ObjectSchema {
    ObjectSchema {
        name,
        key_prefix,
        fields: std::iter::once("Id")
            .chain(fields.iter().copied())
            .map(|name| Field { name, ty: event_field_type(name) })
            .collect(),
        relationships: vec![Relationship { name: "User", id_field: "UserId", target: "User" }],
        storage,
    }
}

/// Every object sfsim serves, as `describe` would tell it.
pub static OBJECTS: LazyLock<Vec<ObjectSchema>> = LazyLock::new(|| {
    use FieldType::*;
    vec![
        object(
            "Organization",
            prefix::ORGANIZATION,
            &[
                ("Id", Id),
                ("Name", String),
                ("InstanceName", String),
                ("OrganizationType", String),
                ("IsSandbox", Boolean),
                ("PrimaryContact", String),
                ("DefaultLocaleSidKey", String),
                ("TimeZoneSidKey", String),
                ("CreatedDate", DateTime),
            ],
            &[],
        ),
        object(
            "User",
            prefix::USER,
            &[
                ("Id", Id),
                ("Username", String),
                ("Email", String),
                ("Name", String),
                ("FirstName", String),
                ("LastName", String),
                ("Alias", String),
                ("IsActive", Boolean),
                ("UserType", String),
                ("ProfileId", Reference),
                ("Department", String),
                ("Title", String),
                ("TimeZoneSidKey", String),
                ("CreatedDate", DateTime),
                ("LastLoginDate", DateTime),
            ],
            &[("Profile", "ProfileId", "Profile")],
        ),
        object(
            "UserLogin",
            prefix::USER_LOGIN,
            &[("Id", Id), ("UserId", Reference), ("IsFrozen", Boolean), ("IsPasswordLocked", Boolean)],
            &[("User", "UserId", "User")],
        ),
        object(
            "Profile",
            prefix::PROFILE,
            &[("Id", Id), ("Name", String), ("UserType", String), ("Description", String)],
            &[],
        ),
        object(
            "PermissionSet",
            prefix::PERMISSION_SET,
            &[
                ("Id", Id),
                ("Name", String),
                ("Label", String),
                ("Type", String),
                ("IsOwnedByProfile", Boolean),
                ("ProfileId", Reference),
                ("PermissionSetGroupId", Reference),
                ("PermissionsExportReport", Boolean),
                ("PermissionsApiEnabled", Boolean),
                ("PermissionsViewSetup", Boolean),
                ("PermissionsViewAllUsers", Boolean),
                ("PermissionsCustomizeApplication", Boolean),
                ("PermissionsViewEventLogFiles", Boolean),
                ("PermissionsModifyAllData", Boolean),
            ],
            &[
                ("Profile", "ProfileId", "Profile"),
                ("PermissionSetGroup", "PermissionSetGroupId", "PermissionSetGroup"),
            ],
        ),
        object(
            "PermissionSetGroup",
            prefix::PERMISSION_SET_GROUP,
            &[("Id", Id), ("DeveloperName", String), ("MasterLabel", String), ("Status", String)],
            &[],
        ),
        object(
            "PermissionSetGroupComponent",
            prefix::PERMISSION_SET_GROUP_COMPONENT,
            &[("Id", Id), ("PermissionSetGroupId", Reference), ("PermissionSetId", Reference)],
            &[
                ("PermissionSetGroup", "PermissionSetGroupId", "PermissionSetGroup"),
                ("PermissionSet", "PermissionSetId", "PermissionSet"),
            ],
        ),
        object(
            "PermissionSetAssignment",
            prefix::PERMISSION_SET_ASSIGNMENT,
            &[
                ("Id", Id),
                ("AssigneeId", Reference),
                ("PermissionSetId", Reference),
                ("PermissionSetGroupId", Reference),
                ("IsActive", Boolean),
                ("ExpirationDate", DateTime),
            ],
            &[
                ("Assignee", "AssigneeId", "User"),
                ("PermissionSet", "PermissionSetId", "PermissionSet"),
                ("PermissionSetGroup", "PermissionSetGroupId", "PermissionSetGroup"),
            ],
        ),
        object(
            "Group",
            prefix::GROUP,
            &[
                ("Id", Id),
                ("Name", String),
                ("DeveloperName", String),
                ("Type", String),
                ("Email", String),
                ("DoesIncludeBosses", Boolean),
            ],
            &[],
        ),
        object(
            "GroupMember",
            prefix::GROUP_MEMBER,
            &[("Id", Id), ("GroupId", Reference), ("UserOrGroupId", Reference)],
            &[("Group", "GroupId", "Group")],
        ),
        event_object("ReportEvent", prefix::REPORT_EVENT, ReportEventStream::FIELDS, Storage::ReportEvents),
        event_object("LoginEvent", prefix::LOGIN_EVENT, LoginEventStream::FIELDS, Storage::LoginEvents),
    ]
});

/// An object's description by case-insensitive name.
pub fn object_schema(name: &str) -> Option<&'static ObjectSchema> {
    OBJECTS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// The object whose ids start with `prefix`.
pub fn object_for_prefix(prefix: &str) -> Option<&'static ObjectSchema> {
    OBJECTS.iter().find(|o| o.key_prefix == prefix)
}

/// A table's record: values in the order of its schema's fields.
pub type Record = Vec<Value>;

/// The records of one ordinary object, indexed by id.
#[derive(Debug)]
pub struct Table {
    pub schema: &'static ObjectSchema,
    rows: Vec<Option<Record>>,
    by_id: HashMap<String, usize>,
}

impl Table {
    pub fn new(schema: &'static ObjectSchema) -> Table {
        Table { schema, rows: Vec::new(), by_id: HashMap::new() }
    }

    /// Adds a record from `(field, value)` pairs; other fields are null. Field names
    /// are ours, so a wrong one is a bug here, not bad input.
    pub fn insert(&mut self, values: &[(&str, Value)]) {
        let mut record = vec![Value::Null; self.schema.fields.len()];
        for (name, value) in values {
            let i = self.schema.field_index(name).unwrap_or_else(|| panic!("{} has no field {name}", self.schema.name));
            record[i] = value.clone();
        }
        let id = record[0].as_str().map(|s| record_key(s).to_owned()).unwrap_or_default();
        self.by_id.insert(id, self.rows.len());
        self.rows.push(Some(record));
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        let key = record_key(id);
        self.by_id.get(key).and_then(|&i| self.rows[i].as_ref())
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Record> {
        let key = record_key(id);
        let i = *self.by_id.get(key)?;
        self.rows[i].as_mut()
    }

    /// Sets one field of a record; false when there is no such record.
    pub fn set(&mut self, id: &str, field: &str, value: Value) -> bool {
        let Some(i) = self.schema.field_index(field) else { panic!("{} has no field {field}", self.schema.name) };
        match self.get_mut(id) {
            Some(record) => {
                record[i] = value;
                true
            }
            None => false,
        }
    }

    pub fn delete(&mut self, id: &str) -> bool {
        let key = record_key(id);
        match self.by_id.remove(key) {
            Some(i) => self.rows[i].take().is_some(),
            None => false,
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = &Record> {
        self.rows.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A field of a record, by name.
    pub fn value<'a>(&self, record: &'a Record, field: &str) -> &'a Value {
        match self.schema.field_index(field) {
            Some(i) => &record[i],
            None => &Value::Null,
        }
    }
}

/// An event kept in a big object (`ReportEvent`, `LoginEvent`).
#[derive(Debug)]
pub struct StoredEvent<E> {
    pub id: SfId,
    pub event: Arc<E>,
}

/// One row of any object, as the query engine sees it.
#[derive(Clone, Copy)]
pub enum Row<'a> {
    Record(&'a Record),
    Report(&'a StoredEvent<ReportEventStream>),
    Login(&'a StoredEvent<LoginEventStream>),
}

impl Row<'_> {
    /// The value of field `index` of `schema` in this row.
    pub fn value(&self, schema: &ObjectSchema, index: usize) -> Value {
        let field = &schema.fields[index];
        let from_event = |stored_id: &SfId, v: Option<FieldValue<'_>>| match (field.name, v) {
            ("Id", _) => Value::id(stored_id),
            (_, None | Some(FieldValue::Null)) => Value::Null,
            (_, Some(FieldValue::Bool(b))) => Value::Bool(b),
            (_, Some(FieldValue::Long(n))) if field.ty == FieldType::DateTime => Value::DateTime(n),
            (_, Some(FieldValue::Long(n))) => Value::Int(n),
            (_, Some(FieldValue::Double(d))) => Value::Double(d),
            (_, Some(FieldValue::Text(s))) => Value::text(s),
        };
        match self {
            Row::Record(r) => r[index].clone(),
            Row::Report(e) => from_event(&e.id, e.event.field(field.name)),
            Row::Login(e) => from_event(&e.id, e.event.field(field.name)),
        }
    }
}
