//! Everything that runs only on the server: settings, state, the router, its middleware, and
//! the bodies of the server functions.

pub mod actions;
pub mod form_memory;
pub mod metrics;
pub mod middleware;
pub mod passthrough;
pub mod router;
pub mod run;
pub mod settings;
pub mod state;
pub mod status;
pub mod telemetry;

pub use router::router;
pub use settings::Settings;
pub use state::AppState;
