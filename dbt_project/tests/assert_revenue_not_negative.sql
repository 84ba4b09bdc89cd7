-- Revenue can never be negative: refunds are modelled as returned orders.
select order_date, revenue
from {{ ref('fct_daily_revenue') }}
where revenue < 0
