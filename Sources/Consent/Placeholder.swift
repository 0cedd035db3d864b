enum ConsentPlaceholder {}
