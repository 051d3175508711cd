"""Pure helpers with no I/O: ids, clocks, errors."""
