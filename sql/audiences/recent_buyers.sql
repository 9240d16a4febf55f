-- Users who completed an order between :start and :end (received time). PostgreSQL syntax:
-- the job checks it and writes it for the warehouse's dialect (README, Audiences).
SELECT DISTINCT user_id
FROM {schema}.order_completed
WHERE user_id IS NOT NULL
  AND received_at >= :start
  AND received_at < :end
