//! One file per page.

pub mod account;
pub mod admin;
pub mod frogs;
pub mod home;
pub mod login;
pub mod not_found;
pub mod register;
