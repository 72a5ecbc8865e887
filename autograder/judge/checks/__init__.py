"""What the judge concludes from checked data: one function per graded property, each returning
``None`` when it holds or one message written for the student (what is wrong, where, what to check)."""
