"""The students' tools: ``python -m assignment.run`` (:mod:`.run`) and its figures (:mod:`.figures`)."""
