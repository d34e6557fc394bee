-- The ceiling of a state change: one UPDATE of one row by primary key, a row per client.
UPDATE bench_state SET state = 'InProgress', progress = progress + 1, last_state_change = now()
 WHERE id = :client_id + 1;
