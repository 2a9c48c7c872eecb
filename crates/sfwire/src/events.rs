//! The Real-Time Event Monitoring event types Tripline reads, as records whose field
//! names are Salesforce's own. Each type knows its Avro schema (record in namespace
//! `com.sforce.eventbus`) and writes itself as an Avro binary datum in that schema.

use crate::avro::{AvroField, AvroRecord, Datum, Primitive, ReadError};

/// A field value seen by name, for code that treats events as generic records
/// (SOQL on the stored big objects, JSON dumps).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Text(&'a str),
}

/// Conversion of a Rust field to a [`FieldValue`].
pub trait AsFieldValue {
    fn field_value(&self) -> FieldValue<'_>;
}

impl AsFieldValue for i64 {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Long(*self)
    }
}
impl AsFieldValue for i32 {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Long(i64::from(*self))
    }
}
impl AsFieldValue for f64 {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Double(*self)
    }
}
impl AsFieldValue for bool {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Bool(*self)
    }
}
impl AsFieldValue for String {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Text(self)
    }
}
impl<T: AsFieldValue> AsFieldValue for Option<T> {
    fn field_value(&self) -> FieldValue<'_> {
        self.as_ref().map_or(FieldValue::Null, AsFieldValue::field_value)
    }
}

/// What every event type offers.
pub trait EventRecord: AvroRecord {
    /// The Avro schema as JSON text.
    fn schema_json() -> String;
    /// Writes the event as an Avro binary datum in [`Self::schema_json`].
    fn write_avro(&self, out: &mut Vec<u8>);
    /// A field by its Salesforce name (exact case).
    fn field(&self, name: &str) -> Option<FieldValue<'_>>;
}

/// Declares an event type: the struct, its field table, schema and encoder, from one
/// list, so that the schema and the encoding cannot drift apart.
macro_rules! event_type {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[allow(non_snake_case)]
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                #[serde(skip_serializing_if = "crate::avro::AvroField::is_absent")]
                pub $field: $ty,
            )*
        }

        impl EventRecord for $name {
            fn schema_json() -> String {
                let fields = vec![$({
                    let mut f = serde_json::json!({
                        "name": stringify!($field),
                        "type": <$ty as AvroField>::avro_type(),
                    });
                    if <$ty as AvroField>::NULLABLE {
                        f["default"] = serde_json::Value::Null;
                    }
                    f
                }),*];
                serde_json::json!({
                    "type": "record",
                    "name": stringify!($name),
                    "namespace": "com.sforce.eventbus",
                    "fields": fields,
                })
                .to_string()
            }

            fn write_avro(&self, out: &mut Vec<u8>) {
                $(self.$field.write(out);)*
            }

            fn field(&self, name: &str) -> Option<FieldValue<'_>> {
                match name {
                    $(stringify!($field) => Some(self.$field.field_value()),)*
                    _ => None,
                }
            }
        }

        impl AvroRecord for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn slot_reads(slot: usize, written: Primitive) -> bool {
                const READS: &[fn(Primitive) -> bool] = &[$(<$ty as AvroField>::reads),*];
                READS.get(slot).is_some_and(|reads| reads(written))
            }

            fn slot_optional(slot: usize) -> bool {
                const OPTIONAL: &[bool] = &[$(<$ty as AvroField>::NULLABLE),*];
                OPTIONAL.get(slot).copied().unwrap_or(false)
            }

            fn set_slot(&mut self, slot: usize, datum: Datum<'_>) -> Result<(), ReadError> {
                let mut at = 0;
                $(
                    if slot == at {
                        self.$field = AvroField::from_datum(datum)?;
                        return Ok(());
                    }
                    at += 1;
                )*
                Err(ReadError::Invalid(format!("no field {slot} of {at}")))
            }
        }
    };
}

event_type! {
    /// A login attempt (`/event/LoginEventStream`; stored as the `LoginEvent` big object).
    LoginEventStream {
        CreatedDate: i64,
        CreatedById: String,
        EventDate: Option<i64>,
        EventIdentifier: Option<String>,
        EventUuid: Option<String>,
        UserId: Option<String>,
        Username: Option<String>,
        UserType: Option<String>,
        SessionKey: Option<String>,
        LoginKey: Option<String>,
        SessionLevel: Option<String>,
        SourceIp: Option<String>,
        Status: Option<String>,
        LoginType: Option<String>,
        LoginUrl: Option<String>,
        Application: Option<String>,
        Browser: Option<String>,
        Platform: Option<String>,
        City: Option<String>,
        Country: Option<String>,
        CountryIso: Option<String>,
        LoginLatitude: Option<f64>,
        LoginLongitude: Option<f64>,
        PolicyId: Option<String>,
        PolicyOutcome: Option<String>,
        EvaluationTime: Option<f64>,
    }
}

event_type! {
    /// An explicit logout (`/event/LogoutEventStream`).
    LogoutEventStream {
        CreatedDate: i64,
        CreatedById: String,
        EventDate: Option<i64>,
        EventIdentifier: Option<String>,
        EventUuid: Option<String>,
        UserId: Option<String>,
        Username: Option<String>,
        SessionKey: Option<String>,
        LoginKey: Option<String>,
        SessionLevel: Option<String>,
        SourceIp: Option<String>,
    }
}

event_type! {
    /// A report run, preview or export (`/event/ReportEventStream`; stored as the
    /// `ReportEvent` big object). A large result arrives as several events sharing
    /// `ExecutionIdentifier`, with increasing `Sequence`.
    ReportEventStream {
        CreatedDate: i64,
        CreatedById: String,
        EventDate: Option<i64>,
        EventIdentifier: Option<String>,
        EventUuid: Option<String>,
        UserId: Option<String>,
        Username: Option<String>,
        SessionKey: Option<String>,
        LoginKey: Option<String>,
        SessionLevel: Option<String>,
        SourceIp: Option<String>,
        Operation: Option<String>,
        ReportId: Option<String>,
        Name: Option<String>,
        Description: Option<String>,
        OwnerId: Option<String>,
        Scope: Option<String>,
        Format: Option<String>,
        ExportFileFormat: Option<String>,
        RowsProcessed: Option<f64>,
        NumberOfColumns: Option<i64>,
        QueriedEntities: Option<String>,
        ColumnHeaders: Option<String>,
        GroupedColumnHeaders: Option<String>,
        DisplayedFieldEntities: Option<String>,
        Records: Option<String>,
        ExecutionIdentifier: Option<String>,
        Sequence: Option<i32>,
        IsScheduled: Option<bool>,
        EventSource: Option<String>,
        DashboardId: Option<String>,
        DashboardName: Option<String>,
        PolicyId: Option<String>,
        PolicyOutcome: Option<String>,
        EvaluationTime: Option<f64>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::{Schema, reader::datum::GenericDatumReader, types::Value};

    fn decode<E: EventRecord>(event: &E) -> Vec<(String, Value)> {
        let schema = Schema::parse_str(&E::schema_json()).expect("schema parses");
        let mut bytes = Vec::new();
        event.write_avro(&mut bytes);
        let mut reader = bytes.as_slice();
        let datum_reader = GenericDatumReader::builder(&schema).build().expect("reader");
        let value = datum_reader.read_value(&mut reader).expect("datum decodes");
        assert!(reader.is_empty(), "the datum is read to its end");
        match value {
            Value::Record(fields) => fields,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn report_event_decodes_with_a_general_avro_reader() {
        let event = ReportEventStream {
            CreatedDate: 1_764_000_000_123,
            CreatedById: "005000000000001AAA".into(),
            EventDate: Some(-5),
            Name: Some("Pipeline \u{e9}t\u{e9} 'Q3'".into()),
            RowsProcessed: Some(12_345.0),
            NumberOfColumns: Some(300),
            Sequence: Some(2),
            IsScheduled: Some(false),
            ..Default::default()
        };
        let fields = decode(&event);
        assert_eq!(fields.len(), ReportEventStream::FIELDS.len());
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(get("CreatedDate"), Some(Value::Long(1_764_000_000_123)));
        assert_eq!(get("EventDate"), Some(Value::Union(1, Box::new(Value::Long(-5)))));
        assert_eq!(get("Name"), Some(Value::Union(1, Box::new(Value::String("Pipeline \u{e9}t\u{e9} 'Q3'".into())))));
        assert_eq!(get("RowsProcessed"), Some(Value::Union(1, Box::new(Value::Double(12_345.0)))));
        assert_eq!(get("Sequence"), Some(Value::Union(1, Box::new(Value::Int(2)))));
        assert_eq!(get("IsScheduled"), Some(Value::Union(1, Box::new(Value::Boolean(false)))));
        assert_eq!(get("Operation"), Some(Value::Union(0, Box::new(Value::Null))));
        assert_eq!(event.field("Sequence"), Some(FieldValue::Long(2)));
        assert_eq!(event.field("Nope"), None);
    }

    #[test]
    fn login_and_logout_schemas_parse_and_decode() {
        let login =
            LoginEventStream { LoginLatitude: Some(47.6), Username: Some("a@b.c".into()), ..Default::default() };
        assert_eq!(decode(&login).len(), LoginEventStream::FIELDS.len());
        let logout = LogoutEventStream::default();
        assert_eq!(decode(&logout).len(), LogoutEventStream::FIELDS.len());
    }
}
