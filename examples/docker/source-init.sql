-- Example schema and rows for the docker-compose source database.
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, total numeric(10,2), status text);
INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, 100) i;
INSERT INTO orders (customer_id, total, status) SELECT 1 + i % 100, i * 1.25, 'new' FROM generate_series(1, 1000) i;
