"""The entity API: batch-first, validated operations on assets, aliases, collections,
retentions, annotations and datums, written atomically through the catalog."""
