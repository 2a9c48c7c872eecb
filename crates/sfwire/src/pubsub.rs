//! Constants of the Pub/Sub API that both server and client must agree on.

/// The gRPC metadata keys every call carries.
pub const ACCESS_TOKEN: &str = "accesstoken";
pub const INSTANCE_URL: &str = "instanceurl";
pub const TENANT_ID: &str = "tenantid";

/// The trailer naming Salesforce's own error code on a failed call.
pub const ERROR_CODE: &str = "error-code";
/// Replay id expired (outside the retention window) or not one the server issued.
pub const REPLAY_ID_CORRUPTED: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";
/// Also seen for a replay id the server cannot validate.
pub const REPLAY_ID_VALIDATION_FAILED: &str =
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed";
/// Missing, expired or revoked access token.
pub const AUTH_ERROR: &str = "sfdc.platform.eventbus.grpc.service.auth.error";
/// Too many clients at once (`RESOURCE_EXHAUSTED`).
pub const CONCURRENT_CLIENT_LIMIT: &str = "sfdc.platform.eventbus.grpc.concurrent.client.limit.exceeded";

/// Most events a Subscribe stream may have requested and not yet received.
pub const MAX_PENDING: i32 = 100;

/// The Real-Time Event Monitoring channels Tripline reads.
pub const LOGIN_TOPIC: &str = "/event/LoginEventStream";
pub const LOGOUT_TOPIC: &str = "/event/LogoutEventStream";
pub const REPORT_TOPIC: &str = "/event/ReportEventStream";

/// Report `Operation` values that are downloads of the report's data.
pub const EXPORT_OPERATIONS: [&str; 3] =
    ["ReportExported", "ReportExportedAsynchronously", "ReportExportedUsingExcelConnector"];

/// Is this ReportEventStream `Operation` a download (export)?
pub fn is_export_operation(operation: &str) -> bool {
    EXPORT_OPERATIONS.contains(&operation)
}
