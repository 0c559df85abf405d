"""HTTP plumbing shared by every blueprint: context, commit boundary, errors, guards, limits."""
