"""The ground floor: the records every other app stands on (projects, members, species,
attributes, images, background jobs and the task outbox). Imports nothing of Trapwise's."""
