//! The terminal UI (being built): styles, key table, text helpers, SQL
//! highlighting, layout, pictures from facts and transcript cells.
//!
//! Only this module and `cli` may use ratatui and crossterm.

mod cells;
mod keys;
mod layout;
mod pictures;
mod sql_view;
mod text;
mod theme;
