<?php
header('Location: /index.php?name=redirected');
