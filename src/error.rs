//! The errors a server function may send to the browser: user-safe variants only.
//!
//! Internal detail (upstream bodies, I/O errors, token problems) is logged on the server and
//! mapped to one of these; nothing else crosses the wire.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// One field of a form that did not validate, with a message to show next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in to continue.")]
    Unauthorized,
    #[error("Your session ended. Please sign in again.")]
    SessionExpired,
    #[error("You do not have access to this page.")]
    Forbidden,
    #[error("Wrong email or password.")]
    InvalidCredentials,
    #[error("An account with this email already exists.")]
    EmailTaken,
    #[error("Please correct the highlighted fields.")]
    Validation(Vec<FieldError>),
    #[error("New accounts cannot be created here.")]
    RegistrationClosed,
    #[error("The request came from another site and was refused.")]
    CrossSite,
    #[error("The service is unavailable right now. Please try again in a moment.")]
    UpstreamUnavailable,
    /// The upstream answered something that makes no sense (a broken or lying API): 502, never
    /// a 500 of ours.
    #[error("The service answered in a way we could not use. Please try again later.")]
    BadGateway,
    #[error("The request could not be understood.")]
    BadRequest,
    #[error("The server could not be reached. Check your connection and try again.")]
    Network,
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
}

impl AppError {
    /// The message for `field`, when this is a validation error that names it.
    pub fn field_message(&self, field: &str) -> Option<String> {
        match self {
            AppError::Validation(fields) => {
                fields.iter().find(|f| f.field == field).map(|f| f.message.clone())
            }
            _ => None,
        }
    }

    /// The HTTP status a server-function answer with this error carries.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthorized | AppError::SessionExpired | AppError::InvalidCredentials => 401,
            AppError::Forbidden | AppError::CrossSite | AppError::RegistrationClosed => 403,
            AppError::EmailTaken => 409,
            AppError::Validation(_) => 422,
            AppError::BadRequest => 400,
            AppError::UpstreamUnavailable | AppError::Network => 503,
            AppError::BadGateway => 502,
            AppError::Internal => 500,
        }
    }

    /// A validation error for one field.
    pub fn invalid(field: &str, message: &str) -> Self {
        AppError::Validation(vec![FieldError { field: field.into(), message: message.into() }])
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(_)
            | ServerFnErrorErr::MissingArg(_)
            | ServerFnErrorErr::Deserialization(_)
            | ServerFnErrorErr::UnsupportedRequestMethod(_) => AppError::BadRequest,
            ServerFnErrorErr::Request(_) => AppError::Network,
            _ => AppError::Internal,
        }
    }
}

/// Why the server status, the one server function an island calls, gave no answer. Its messages
/// are what the island shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StatusError {
    #[error("The server could not be reached. Check your connection.")]
    Unreachable,
    #[error("The server could not answer. Please try again.")]
    Failed,
}

impl FromServerFnError for StatusError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(_) => StatusError::Unreachable,
            _ => StatusError::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_errors_map_to_safe_variants() {
        let e = AppError::from_server_fn_error(ServerFnErrorErr::Args("secret detail".into()));
        assert_eq!(e, AppError::BadRequest);
        let e = AppError::from_server_fn_error(ServerFnErrorErr::ServerError("db down".into()));
        assert_eq!(e, AppError::Internal);
        assert!(!e.to_string().contains("db down"));
    }

    #[test]
    fn the_status_errors_say_nothing_internal() {
        use leptos::server_fn::{Decodes, Encodes};
        let e = StatusError::from_server_fn_error(ServerFnErrorErr::ServerError("redis down".into()));
        assert_eq!(e, StatusError::Failed);
        assert!(!e.to_string().contains("redis"));
        let e = StatusError::from_server_fn_error(ServerFnErrorErr::Request("no route".into()));
        assert_eq!(e, StatusError::Unreachable);
        let bytes = <JsonEncoding as Encodes<StatusError>>::encode(&e).unwrap();
        assert_eq!(<JsonEncoding as Decodes<StatusError>>::decode(bytes).unwrap(), e);
    }

    #[test]
    fn encodes_round_trip() {
        let e = AppError::invalid("email", "Enter an email address.");
        let back = AppError::de(e.ser());
        assert_eq!(back, e);
        assert_eq!(back.field_message("email").as_deref(), Some("Enter an email address."));
        assert_eq!(back.field_message("password"), None);
    }
}
