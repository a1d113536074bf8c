//! douyin_club's pages: maud templates as plain functions of small view models, and the static
//! CSS/JS they link to. Knows nothing of actors, HTTP clients or the database.

mod cards;
mod layout;
pub mod model;
mod pages;
pub mod statics;

pub use model::*;
pub use pages::{error_page, home, user_home, user_page, watch};
