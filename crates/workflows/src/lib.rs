//! TODO(#2-#5): see ARCHITECTURE.md
