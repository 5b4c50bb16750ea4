//! Tokenless BFF core (filled by the sessions issue).
