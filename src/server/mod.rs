//! Everything that runs only on the server: settings, state, the router and its handlers.

pub mod router;
pub mod run;
pub mod settings;
pub mod state;
pub mod status;
pub mod telemetry;

pub use router::router;
pub use settings::Settings;
pub use state::AppState;
